package relay

import (
	"sync"
	"time"
)

// minBurst lets a QUIC sender's bursts through a bucket: a GSO batch is up
// to 20 KiB, and a congestion window opens in several at once.
const minBurst = 256 << 10

// bucket is a token bucket of bytes. A nil bucket allows everything.
type bucket struct {
	rate  float64 // bytes per second
	burst float64

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// newBucket returns a bucket for rate bytes per second, or nil for none.
// It holds a quarter second's worth, so a burst at line rate passes while
// the average stays bounded.
func newBucket(rate int64) *bucket {
	if rate <= 0 {
		return nil
	}
	burst := max(float64(rate)/4, minBurst)
	return &bucket{rate: float64(rate), burst: burst, tokens: burst, last: time.Now()}
}

// allow takes n bytes if they are there.
func (b *bucket) allow(n int) bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens < float64(n) {
		return false
	}
	b.tokens -= float64(n)
	return true
}
