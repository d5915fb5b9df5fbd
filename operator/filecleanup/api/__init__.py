"""Layer api. The bottom layer: what the Kubernetes API and the configuration say (the FileCleanup model, the
key rules, index ranges, the operator's configuration, the Kubernetes client, the metrics registry, secret
redaction) and the gate every key passes as it is sent. It imports no other layer."""
