package storage

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/jumpmesh/jumpmesh/client"
	storagev1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/drivers/storage/v1"
)

// Client drives a storage driver.
type Client struct{ d *client.Driver }

// NewClient returns a client of d, which must implement Interface.
func NewClient(d *client.Driver) *Client { return &Client{d: d} }

// WriteOptions qualify an image.
type WriteOptions struct {
	// Compression is how the image is compressed; empty means Auto.
	Compression Compression
	// SHA256, if set, is the hex sha256 the decompressed image must have;
	// on a mismatch the write fails and is rolled back.
	SHA256 string
}

// Write streams image to the target, which decompresses and writes it.
func (c *Client) Write(ctx context.Context, image io.Reader, opts WriteOptions) (Image, error) {
	if opts.Compression == "" {
		opts.Compression = Auto
	}
	if _, err := ParseCompression(string(opts.Compression)); err != nil {
		return Image{}, err
	}
	req := &storagev1.WriteRequest{Compression: opts.Compression.proto(), Sha256: opts.SHA256}
	st, err := c.d.OpenBytes(ctx, Interface, "Write", req)
	if err != nil {
		return Image{}, err
	}
	defer st.Close()
	// Read while writing: the exporter ends the stream as soon as it
	// refuses the image (too big, corrupt), and its reason must stop the
	// upload rather than wait behind it.
	ended := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, st)
		if err != nil {
			st.Close() // unblocks the upload
		}
		ended <- err
	}()
	if _, err := io.Copy(st, localReader{image}); err != nil {
		var le localError
		if errors.As(err, &le) {
			st.Close()
			<-ended
			return Image{}, fmt.Errorf("read the image: %w", le.err)
		}
		if rerr := <-ended; rerr != nil {
			return Image{}, rerr
		}
		return Image{}, err
	}
	if err := st.CloseWrite(); err != nil {
		if rerr := <-ended; rerr != nil {
			return Image{}, rerr
		}
		return Image{}, err
	}
	if err := <-ended; err != nil {
		return Image{}, err
	}
	var resp storagev1.WriteResponse
	if err := st.Wait(&resp); err != nil {
		return Image{}, err
	}
	return imageFromProto(&resp), nil
}

// Info returns the target's size and the last image written.
func (c *Client) Info(ctx context.Context) (Info, error) {
	var resp storagev1.InfoResponse
	if err := c.d.Call(ctx, Interface, "Info", &storagev1.InfoRequest{}, &resp); err != nil {
		return Info{}, err
	}
	info := Info{Size: resp.GetSize()}
	if resp.GetLastWrite() != nil {
		img := imageFromProto(resp.GetLastWrite())
		info.Last = &img
	}
	return info, nil
}

// localError marks an error reading the local image.
type localError struct{ err error }

func (e localError) Error() string { return e.err.Error() }
func (e localError) Unwrap() error { return e.err }

type localReader struct{ r io.Reader }

func (l localReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	if err != nil && err != io.EOF {
		err = localError{err}
	}
	return n, err
}
