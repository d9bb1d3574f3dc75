package coordclient

import (
	"context"
	"errors"
	"fmt"
	"net"

	"connectrpc.com/connect"
)

// Explain turns an error from a call into one line saying what went wrong
// and what to do.
func (c *Client) Explain(err error) error {
	if err == nil {
		return nil
	}
	source := c.Source
	if source == "" {
		source = "the config"
	}
	var fp *FingerprintError
	if errors.As(err, &fp) {
		return fmt.Errorf("%v (%s); if the coordinator was reinstalled, get a new config from your admin", fp, source)
	}
	var netErr net.Error
	var opErr *net.OpError
	switch {
	case errors.As(err, &opErr) || errors.As(err, &netErr) && netErr.Timeout():
		return fmt.Errorf("cannot reach the coordinator at %s: %v; is it running, and is the endpoint in %s right?",
			c.Endpoint, rootCause(err), source)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("the coordinator at %s did not answer in time", c.Endpoint)
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		if ce.Code() == connect.CodeUnavailable || ce.Code() == connect.CodeUnknown && ce.Message() == "" {
			return fmt.Errorf("cannot reach the coordinator at %s: %v; is it running, and is the endpoint in %s right?",
				c.Endpoint, rootCause(err), source)
		}
		return errors.New(ce.Message())
	}
	return err
}

func rootCause(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}
