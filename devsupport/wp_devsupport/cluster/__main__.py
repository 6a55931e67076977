"""`python -m wp_devsupport.cluster up|down|status [--workdir DIR]`: the local single-node cluster.

`up` starts it (wp_devsupport.cluster.node) and leaves it running, `down` stops it and undoes its side
effects, `status` lists its processes, `env` prints `KUBECONFIG=`, `CONTEXT=` and `CONTAINERD_ADDRESS=`
lines for scripts (ci/kind/kind-e2e.sh with CLUSTER_PROVIDER=local) and exits 1 when no node runs. Failures are one line plus the tail of the failing component's
log, exit code 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from .node import Node, NodeError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wp_devsupport.cluster", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    parser.add_argument("--workdir", type=Path, help="state, logs and kubeconfig (default: .state/node/)")
    args = parser.parse_args(argv)
    node = Node(detach=True, **({"workdir": args.workdir} if args.workdir else {}))
    try:
        if args.command == "up":
            node.up()
            width = max(map(len, node.timings))
            print("[node] startup time per component:")
            for name, seconds in node.timings.items():
                print(f"  {name:<{width}} {seconds:5.1f}s")
            print(f"[node] Ready. export KUBECONFIG={node.kubeconfig}   (logs: {node.logs}/)")
        elif args.command == "down":
            node.down()
        elif args.command == "env":
            missing = set(node.recorded_components()) - set(node.running())
            if not node.running() or missing:
                raise NodeError(node.status())
            config = yaml.safe_load(node.kubeconfig.read_text(encoding="utf-8"))
            print(f"KUBECONFIG={node.kubeconfig}")
            print(f"CONTEXT={config['current-context']}")
            print(f"CONTAINERD_ADDRESS={node.socket}")
        else:
            print(node.status())
    except NodeError as e:
        first, _, rest = str(e).partition("\n")
        print(f"cluster {args.command} failed: {first}", file=sys.stderr)
        if rest:
            print(rest, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"cluster {args.command} interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
