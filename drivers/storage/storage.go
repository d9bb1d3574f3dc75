// Package storage is the storage interface: it binds the
// jumpmesh.drivers.storage.v1.Storage service to the Server that storage
// drivers implement, and does for all of them what flashing needs:
// decompressing the image on the fly, counting and hashing it, checking it
// against the expected sha256 and the target's size, and rolling a failed
// write back. It gives clients a typed Client and `j` its flash and info
// commands.
package storage

import (
	"context"
	"io"

	"github.com/jumpmesh/jumpmesh/drivers"
	storagev1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/drivers/storage/v1"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Interface is the full name of the service.
const Interface = "jumpmesh.drivers.storage.v1.Storage"

var service = storagev1.File_jumpmesh_drivers_storage_v1_storage_proto.Services().ByName("Storage")

// Image describes an image written to a target.
type Image struct {
	// Size is the number of bytes written (decompressed).
	Size int64
	// SHA256 is the hex sha256 of the bytes written.
	SHA256 string
	// Compression is how the image was sent.
	Compression Compression
}

// Info describes a target.
type Info struct {
	// Size is the target's capacity in bytes; 0 when unknown.
	Size int64
	// Last is the last image written, nil when unknown.
	Last *Image
}

// Server is a storage target as drivers implement it.
type Server interface {
	Info(ctx context.Context) (Info, error)
	// Create starts writing a new image.
	Create(ctx context.Context) (Target, error)
}

// Target receives one image. Exactly one of Commit and Abort is called.
type Target interface {
	io.Writer
	// Commit makes what was written the target's content.
	Commit(Image) error
	// Abort discards what was written. A target that cannot undo its
	// writes returns an error saying what it holds now.
	Abort() error
}

// Bind serves s as the storage interface.
func Bind(s Server) drivers.Interface {
	return drivers.Interface{
		Service: service,
		Handlers: map[protoreflect.Name]drivers.Handler{
			"Write": drivers.Bytes(func(ctx context.Context, req *storagev1.WriteRequest, stream drivers.ByteStream) (*storagev1.WriteResponse, error) {
				img, err := write(ctx, s, req, stream)
				if err != nil {
					return nil, err
				}
				return img.proto(), nil
			}),
			"Info": drivers.Unary(func(ctx context.Context, _ *storagev1.InfoRequest) (*storagev1.InfoResponse, error) {
				info, err := s.Info(ctx)
				if err != nil {
					return nil, err
				}
				resp := &storagev1.InfoResponse{Size: info.Size}
				if info.Last != nil {
					resp.LastWrite = info.Last.proto()
				}
				return resp, nil
			}),
		},
	}
}

func (img Image) proto() *storagev1.WriteResponse {
	return &storagev1.WriteResponse{BytesWritten: img.Size, Sha256: img.SHA256, Compression: img.Compression.proto()}
}

func imageFromProto(r *storagev1.WriteResponse) Image {
	return Image{Size: r.GetBytesWritten(), SHA256: r.GetSha256(), Compression: compressionFromProto(r.GetCompression())}
}
