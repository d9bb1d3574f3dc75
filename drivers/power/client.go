package power

import (
	"context"
	"time"

	"github.com/jumpmesh/jumpmesh/client"
	powerv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/drivers/power/v1"
)

// Client drives a power driver.
type Client struct{ d *client.Driver }

// NewClient returns a client of d, which must implement Interface.
func NewClient(d *client.Driver) *Client { return &Client{d: d} }

// On turns the power on.
func (c *Client) On(ctx context.Context) error {
	return c.d.Call(ctx, Interface, "On", &powerv1.OnRequest{}, &powerv1.OnResponse{})
}

// Off turns the power off.
func (c *Client) Off(ctx context.Context) error {
	return c.d.Call(ctx, Interface, "Off", &powerv1.OffRequest{}, &powerv1.OffResponse{})
}

// Cycle turns the power off, waits delay (0: the driver's default) and
// turns it on again.
func (c *Client) Cycle(ctx context.Context, delay time.Duration) error {
	return c.d.Call(ctx, Interface, "Cycle", &powerv1.CycleRequest{Delay: durationOrNil(delay)}, &powerv1.CycleResponse{})
}

// Status returns the power state.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var resp powerv1.StatusResponse
	if err := c.d.Call(ctx, Interface, "Status", &powerv1.StatusRequest{}, &resp); err != nil {
		return Status{}, err
	}
	return fromProto(&resp)
}

// Watch calls fn with the current state, then with every change, until
// ctx ends, fn fails or the exporter ends the stream.
func (c *Client) Watch(ctx context.Context, fn func(Status) error) error {
	return client.Stream(ctx, c.d, Interface, "Watch", &powerv1.WatchRequest{}, func(r *powerv1.StatusResponse) error {
		st, err := fromProto(r)
		if err != nil {
			return err
		}
		return fn(st)
	})
}
