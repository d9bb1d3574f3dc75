package kubestore

import (
	"testing"

	"github.com/jumpmesh/jumpmesh/coordinator/store"
	"github.com/jumpmesh/jumpmesh/coordinator/store/storetest"
)

func TestConformance(t *testing.T) {
	needPlane(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := New(t.Context(), Options{Namespace: newNamespace(t), RESTConfig: plane.RESTConfig(), Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
