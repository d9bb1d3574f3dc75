package storage

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/docker/go-units"
	"github.com/jumpmesh/jumpmesh/client"
	"github.com/jumpmesh/jumpmesh/drivers"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// progressStep is how often plain progress lines come: every 10%, enough
// to show life in a CI log without flooding it.
const progressStep = 10

// Commands are the `j` subcommands of a storage driver.
func Commands(d *client.Driver) []*cobra.Command {
	j := "j " + strings.ReplaceAll(d.Path, ".", " ")
	c := NewClient(d)
	return []*cobra.Command{flashCmd(c, j), infoCmd(c, j)}
}

func flashCmd(c *Client, j string) *cobra.Command {
	var sha, compression string
	cmd := &cobra.Command{
		Use:   "flash FILE [--sha256 HEX] [--compression auto|none|gzip|xz|zstd]",
		Short: drivers.MethodDescription(service, "Write"),
		Long: drivers.MethodDescription(service, "Write") + `

The image may be compressed with gzip, xz or zstd: the exporter decompresses
it as it arrives (detected from its first bytes unless --compression says).
With --sha256, the decompressed image must have that hash, or the write fails
and is rolled back where the target allows. FILE - reads the image from stdin.`,
		Example: fmt.Sprintf("  %s flash disk.img.xz\n  %s flash disk.img --sha256 $(sha256sum disk.img | cut -d' ' -f1)\n  curl -sL https://example.com/disk.img.zst | %s flash -", j, j, j),
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			comp, err := ParseCompression(compression)
			if err != nil {
				return fmt.Errorf("--compression: %w", err)
			}
			if sha != "" && !isSHA256(strings.ToLower(sha)) {
				return fmt.Errorf("--sha256 %q is not 64 hex digits; give the output of `sha256sum` on the decompressed image", sha)
			}
			name, in, size := args[0], cmd.InOrStdin(), int64(-1)
			if name != "-" {
				f, err := os.Open(name)
				if err != nil {
					return fmt.Errorf("open the image: %w", err)
				}
				defer f.Close()
				fi, err := f.Stat()
				if err != nil {
					return fmt.Errorf("open the image: %w", err)
				}
				in, size = f, fi.Size()
			}
			p := newProgress(cmd.ErrOrStderr(), name, size)
			img, err := c.Write(cmd.Context(), io.TeeReader(in, p), WriteOptions{Compression: comp, SHA256: sha})
			p.finish(err == nil)
			if err != nil {
				return err
			}
			from := ""
			if img.Compression != None {
				from = fmt.Sprintf(" (decompressed from %s)", img.Compression)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "wrote %d bytes%s, sha256 %s\n", img.Size, from, img.SHA256)
			return err
		},
	}
	cmd.Flags().StringVar(&sha, "sha256", "", "the sha256 (hex) the decompressed image must have")
	cmd.Flags().StringVar(&compression, "compression", string(Auto), "how FILE is compressed: auto, none, gzip, xz, zstd")
	return cmd
}

func infoCmd(c *Client, j string) *cobra.Command {
	return &cobra.Command{
		Use:     "info",
		Short:   drivers.MethodDescription(service, "Info"),
		Example: "  " + j + " info",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info, err := c.Info(cmd.Context())
			if err != nil {
				return err
			}
			var b strings.Builder
			if info.Size > 0 {
				fmt.Fprintf(&b, "size: %s (%d bytes)\n", units.BytesSize(float64(info.Size)), info.Size)
			} else {
				b.WriteString("size: unknown\n")
			}
			if l := info.Last; l != nil {
				fmt.Fprintf(&b, "last write: %d bytes, sha256 %s", l.Size, l.SHA256)
				if l.Compression != None && l.Compression != Auto {
					fmt.Fprintf(&b, ", sent as %s", l.Compression)
				}
				b.WriteString("\n")
			} else {
				b.WriteString("last write: none recorded\n")
			}
			_, err = io.WriteString(cmd.OutOrStdout(), b.String())
			return err
		},
	}
}

// progress reports how much of the image was sent: a bar on a terminal,
// a line every progressStep percent otherwise.
type progress struct {
	bar      *progressbar.ProgressBar // on a terminal
	w        io.Writer
	name     string
	size     int64
	sent     int64
	reported int64 // percent last printed
}

func newProgress(w io.Writer, name string, size int64) *progress {
	p := &progress{w: w, name: name, size: size}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bar = progressbar.NewOptions64(size,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription("flash "+name),
			progressbar.OptionShowBytes(true),
			progressbar.OptionShowTotalBytes(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionFullWidth(),
			progressbar.OptionClearOnFinish(),
		)
	}
	return p
}

func (p *progress) Write(b []byte) (int, error) {
	p.sent += int64(len(b))
	switch {
	case p.bar != nil:
		p.bar.Add64(int64(len(b)))
	case p.size > 0:
		if pct := p.sent * 100 / p.size; pct >= p.reported+progressStep {
			p.reported = pct - pct%progressStep
			fmt.Fprintf(p.w, "flash %s: %d%% (%s of %s sent)\n", p.name, p.reported, units.BytesSize(float64(p.sent)), units.BytesSize(float64(p.size)))
		}
	}
	return len(b), nil
}

// finish ends the bar; a failed write leaves it where it stopped.
func (p *progress) finish(ok bool) {
	if p.bar == nil {
		return
	}
	if ok {
		p.bar.Finish()
	} else {
		p.bar.Exit()
	}
}

// describe is the method's description from the proto, for help text.
