package bus

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Conn is a client of Flotilla's buckets and streams through calls whose
// subjects carry the cluster or the object they touch: a cluster's NATS
// permissions (natsauth.ClusterPermissions) can confine every one of them
// to its own. It binds no bucket, because binding reads stream info, and
// stream info lists every key of the fleet.
type Conn struct {
	nc *nats.Conn
	js jetstream.JetStream
}

// Open returns a Conn on nc; the buckets need not exist yet.
func Open(nc *nats.Conn) (*Conn, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	return &Conn{nc: nc, js: js}, nil
}

// maxArtifactSize bounds what GetArtifact reads: the artifact limits the
// agent unpacks with are smaller, and an object claiming more is refused
// before a chunk is read.
const maxArtifactSize = 256 << 20

// directGetLast reads the newest message on subject of stream by a direct
// get whose request subject names the message's subject, so permissions
// can scope it. It returns ErrNotFound (wrapped) when there is none or the
// newest is a delete marker.
func (c *Conn) directGetLast(ctx context.Context, stream, subject string) (*nats.Msg, uint64, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	msg, err := c.nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET."+stream+"."+subject, nil)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, 0, fmt.Errorf("%s: %w", subject, ErrNotProvisioned)
	}
	if err != nil {
		return nil, 0, err
	}
	if status := msg.Header.Get("Status"); status != "" {
		if status == "404" {
			return nil, 0, fmt.Errorf("%s: %w", subject, ErrNotFound)
		}
		return nil, 0, fmt.Errorf("%s: direct get: %s %s", subject, status, msg.Header.Get("Description"))
	}
	if op := msg.Header.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
		return nil, 0, fmt.Errorf("%s: %w", subject, ErrNotFound)
	}
	seq, err := strconv.ParseUint(msg.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: direct get without a sequence", subject)
	}
	return msg, seq, nil
}

// GetArtifact reads an artifact by its digest: the object's metadata by a
// direct get on its name, then its chunks, checked against the object's
// own SHA-256. A single chunk (PutArtifact's chunks make most artifacts
// one) is read by a direct get on the object's chunk subject; more with a
// consumer on it. It returns ErrNotFound (wrapped) when it does
// not exist.
func (c *Conn) GetArtifact(ctx context.Context, digest string) ([]byte, error) {
	metaSubject := "$O." + ArtifactStore + ".M." + base64.URLEncoding.EncodeToString([]byte(digest))
	msg, _, err := c.directGetLast(ctx, "OBJ_"+ArtifactStore, metaSubject)
	if err != nil {
		return nil, fmt.Errorf("artifact %s: %w", digest, err)
	}
	var info jetstream.ObjectInfo
	if err := json.Unmarshal(msg.Data, &info); err != nil {
		return nil, fmt.Errorf("artifact %s: metadata: %w", digest, err)
	}
	switch {
	case info.Deleted:
		return nil, fmt.Errorf("artifact %s: %w", digest, ErrNotFound)
	case info.Size > maxArtifactSize:
		return nil, fmt.Errorf("artifact %s: %d bytes is over the %d limit", digest, info.Size, maxArtifactSize)
	case info.NUID == "":
		return nil, fmt.Errorf("artifact %s: metadata names no chunks", digest)
	}
	data := make([]byte, 0, info.Size)
	chunks := "$O." + ArtifactStore + ".C." + info.NUID
	switch {
	case info.Chunks == 1:
		msg, _, err := c.directGetLast(ctx, "OBJ_"+ArtifactStore, chunks)
		if err != nil {
			return nil, fmt.Errorf("artifact %s: chunk: %w", digest, err)
		}
		data = append(data, msg.Data...)
	case info.Chunks > 1:
		err = c.drain(ctx, "OBJ_"+ArtifactStore, chunks, jetstream.DeliverAllPolicy, func(m jetstream.Msg) {
			if uint64(len(data)+len(m.Data())) <= info.Size {
				data = append(data, m.Data()...)
			}
		})
		if err != nil {
			return nil, fmt.Errorf("artifact %s: %w", digest, err)
		}
	}
	sum := sha256.Sum256(data)
	if uint64(len(data)) != info.Size || "SHA-256="+base64.URLEncoding.EncodeToString(sum[:]) != info.Digest {
		return nil, fmt.Errorf("artifact %s: chunks do not match the object's size and digest", digest)
	}
	return data, nil
}
