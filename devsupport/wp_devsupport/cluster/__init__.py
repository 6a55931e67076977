"""The chart against a real Kubernetes API: etcd + kube-apiserver (`control_plane`), a small client and Helm
bound to it (`kube_client`), and the scenarios, installs and checks the cluster suite shares (`support`)."""
