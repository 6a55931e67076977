/*
 * The pod sandbox process of the local node (ci/node/images.sh builds it into the pause image).
 *
 * Our own minimal equivalent of Kubernetes' build/pause/linux/pause.c: it holds the pod's namespaces
 * open and does nothing else. As PID 1 of the pod's PID namespace it must
 *   - exit 0 on SIGINT and SIGTERM (the kernel ignores signals without a handler for a namespace's
 *     init, so they need explicit handlers), and
 *   - reap the zombies it inherits: with a shared process namespace, orphaned processes of every
 *     container are reparented to it.
 * Built with `gcc -static -Os`: one static ELF, no dynamic loader, no libraries in the image.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef VERSION
#define VERSION "unknown"
#endif

static void on_terminate(int sig) {
  (void)sig;
  _exit(0);
}

static void on_child(int sig) {
  int saved = errno;
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
  errno = saved;
}

int main(int argc, char **argv) {
  struct sigaction action;

  if (argc > 1 && strcmp(argv[1], "-v") == 0) {
    printf("wp-k8s-service pause %s\n", VERSION);
    return 0;
  }
  if (getpid() != 1) {
    fprintf(stderr, "Warning: pause should be the first process\n");
  }

  memset(&action, 0, sizeof(action));
  sigemptyset(&action.sa_mask);
  action.sa_handler = on_terminate;
  if (sigaction(SIGINT, &action, NULL) < 0 || sigaction(SIGTERM, &action, NULL) < 0) {
    perror("sigaction");
    return 1;
  }
  action.sa_handler = on_child;
  action.sa_flags = SA_NOCLDSTOP | SA_RESTART;
  if (sigaction(SIGCHLD, &action, NULL) < 0) {
    perror("sigaction");
    return 2;
  }

  for (;;) {
    pause();
  }
  fprintf(stderr, "Error: infinite loop terminated\n");
  return 42;
}
