package netsim

import "testing"

// BenchmarkPacketPath sends datagrams from a site host through its NAT to a
// public host, in real time. Compare "trace on" (a tracer that does
// nothing) with "trace off" to see what tracing costs when it is off.
func BenchmarkPacketPath(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts []Option
	}{
		{name: "trace off"},
		{name: "trace on", opts: []Option{WithTrace(func(Event) {})}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			n, err := New(siteAndServer(NAT{}, Firewall{}), bc.opts...)
			if err != nil {
				b.Fatal(err)
			}
			defer n.Close()
			c, _ := n.Host("c")
			s, _ := n.Host("s")
			sc, err := s.ListenPacket("udp", ":9")
			if err != nil {
				b.Fatal(err)
			}
			go func() {
				buf := make([]byte, 2048)
				for {
					if _, _, err := sc.ReadFrom(buf); err != nil {
						return
					}
				}
			}()
			cc, err := c.ListenPacket("udp", ":0")
			if err != nil {
				b.Fatal(err)
			}
			to := udpAddr(s.Addr(), 9)
			payload := make([]byte, 1200)
			b.SetBytes(int64(len(payload)))
			for b.Loop() {
				if _, err := cc.WriteTo(payload, to); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
