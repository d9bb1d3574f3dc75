package kubestore

import (
	"errors"
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// LoadConfig finds the API server the way kubectl does: the kubeconfig
// files in $KUBECONFIG, else ~/.kube/config, else the pod's in-cluster
// service account. The namespace is namespace if given, else the
// kubeconfig context's, else the pod's own.
func LoadConfig(namespace string) (*rest.Config, string, error) {
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(clientcmd.NewDefaultClientConfigLoadingRules(),
		&clientcmd.ConfigOverrides{Context: clientcmdapi.Context{Namespace: namespace}})
	cfg, err := loader.ClientConfig()
	if clientcmd.IsEmptyConfig(err) {
		return nil, "", errors.New("find the Kubernetes API server: no kubeconfig and not in a pod; set KUBECONFIG")
	}
	if err != nil {
		return nil, "", fmt.Errorf("find the Kubernetes API server (set KUBECONFIG, or run in a pod): %w", err)
	}
	ns, _, err := loader.Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("find the namespace (pass --namespace): %w", err)
	}
	return cfg, ns, nil
}
