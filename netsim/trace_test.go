package netsim

import (
	"bytes"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// TestTraceHops: a traced packet shows every hop, NAT translation included.
func TestTraceHops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var tr tracer
		n := start(t, siteAndServer(NAT{}, Firewall{}), WithTrace(tr.record))
		c, s := host(t, n, "c"), host(t, n, "s")
		sc := listenUDP(t, s, ":9")
		send(t, listenUDP(t, c, ":5000"), udpAddr(s.Addr(), 9), "traced")
		_, ok := recv(t, sc, time.Second)
		require.True(t, ok)
		require.Equal(t, []string{
			"send host c",
			"arrive link c out",
			"translate router home",
			"arrive uplink home out",
			"arrive link s in",
			"deliver host s",
		}, tr.steps())
	})
}

// TestTraceEnv: NETSIM_TRACE=1 logs packet events through slog.
func TestTraceEnv(t *testing.T) {
	t.Setenv(TraceEnv, "1")
	var buf bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })

	synctest.Test(t, func(t *testing.T) {
		n := start(t, pair(1, Link{Loss: 1}, Link{}))
		a, b := host(t, n, "a"), host(t, n, "b")
		send(t, listenUDP(t, a, ":0"), udpAddr(b.Addr(), 9), "lost")
	})
	require.Contains(t, buf.String(), `event=drop proto=udp`)
	require.Contains(t, buf.String(), `reason=loss`)
}
