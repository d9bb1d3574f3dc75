package kubestore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Leader election timings: client-go's usual values. A replica that dies
// holding the lock is replaced within leaseDuration.
const (
	leaseDuration = 15 * time.Second
	renewDeadline = 10 * time.Second
	retryPeriod   = 2 * time.Second
)

// Lead runs fn while this replica holds the coordination.k8s.io Lease
// named name in the store's namespace, and again each time it wins it
// back, until ctx ends. fn's context ends when the lock is lost. Use it
// only for work that must have one actor: every write of the coordinator
// is already safe with many.
func (s *Store) Lead(ctx context.Context, name string, fn func(ctx context.Context)) {
	host, _ := os.Hostname()
	id := make([]byte, 4)
	_, _ = rand.Read(id)
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: name, Namespace: s.ns},
		Client:     s.core.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: host + "-" + hex.EncodeToString(id)},
	}
	for ctx.Err() == nil {
		leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   leaseDuration,
			RenewDeadline:   renewDeadline,
			RetryPeriod:     retryPeriod,
			ReleaseOnCancel: true,
			Name:            name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: fn,
				OnStoppedLeading: func() { s.log.Info("kubestore: lost the lead", "lock", name) },
			},
		})
	}
}
