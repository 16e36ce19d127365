"""A real etcd + kube-apiserver for tests: built from the Go module proxy, run on 127.0.0.1."""
