// Package boltstore is the coordinator's embedded store: one bbolt file.
// Writes from many goroutines are committed together (group commit), so the
// store keeps up with a busy scheduler while every acknowledged write is on
// disk.
package boltstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/store"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"google.golang.org/protobuf/proto"
)

const (
	// maxBatch bounds one commit so a flood of writes still gets answers
	// steadily rather than in one huge transaction.
	maxBatch = 1024
	// historySize is how many recent changes a watch can resume from: enough
	// to cover the gap between listing every kind and starting to watch.
	historySize = 16384
	// lockTimeout: another process holding the file is reported, not waited
	// for forever.
	lockTimeout = 2 * time.Second
)

var (
	metaBucket  = []byte("meta")
	revisionKey = []byte("revision")
)

// Store is a store.Store in one bbolt file.
type Store struct {
	db     *bolt.DB
	ops    chan *op
	done   chan struct{}
	closed chan struct{}
	once   sync.Once

	mu       sync.Mutex
	revision uint64
	history  []store.Event // ring of the latest changes, oldest first
	watchers map[*store.Feed]struct{}
}

type opKind int

const (
	opCreate opKind = iota
	opUpdate
	opDelete
)

// op is one write waiting for the writer goroutine.
type op struct {
	kind    opKind
	bucket  store.Kind
	name    string
	expect  uint64       // version the record must have (update, delete)
	data    []byte       // encoded record (create, update)
	event   store.Object // the record as the watchers will see it
	version uint64       // set by the writer on success
	err     error
	reply   chan struct{}
}

// Open opens or creates the store file at path.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open store %s: another process holds it; is a coordinator already running on this data dir?", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{
		db:       db,
		ops:      make(chan *op, maxBatch),
		done:     make(chan struct{}),
		closed:   make(chan struct{}),
		watchers: map[*store.Feed]struct{}{},
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, k := range append([]store.Kind{store.Kind(metaBucket)}, store.Kinds...) {
			if _, err := tx.CreateBucketIfNotExists([]byte(k)); err != nil {
				return err
			}
		}
		if v := tx.Bucket(metaBucket).Get(revisionKey); len(v) == 8 {
			s.revision = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	go s.writer()
	return s, nil
}

// Close stops the writer, ends every watch and closes the file.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		close(s.done)
		<-s.closed
		s.mu.Lock()
		for f := range s.watchers {
			f.Stop()
		}
		s.mu.Unlock()
		err = s.db.Close()
	})
	return err
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, kind store.Kind, name string) (store.Object, error) {
	var obj store.Object
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(kind))
		if b == nil {
			return fmt.Errorf("store: unknown kind %q", kind)
		}
		v := b.Get([]byte(name))
		if v == nil {
			return store.ErrNotFound
		}
		var err error
		obj, err = decode(kind, v)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("get %s/%s: %w", kind, name, err)
	}
	return obj, nil
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, kind store.Kind) ([]store.Object, uint64, error) {
	var objs []store.Object
	var rev uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(metaBucket).Get(revisionKey); len(v) == 8 {
			rev = binary.BigEndian.Uint64(v)
		}
		b := tx.Bucket([]byte(kind))
		if b == nil {
			return fmt.Errorf("store: unknown kind %q", kind)
		}
		objs = make([]store.Object, 0, b.Stats().KeyN)
		return b.ForEach(func(_, v []byte) error {
			obj, err := decode(kind, v)
			if err != nil {
				return err
			}
			objs = append(objs, obj)
			return nil
		})
	})
	if err != nil {
		return nil, 0, fmt.Errorf("list %s: %w", kind, err)
	}
	return objs, rev, nil
}

// Create implements store.Store.
func (s *Store) Create(ctx context.Context, obj store.Object) error {
	return s.write(ctx, opCreate, obj, 0)
}

// Update implements store.Store.
func (s *Store) Update(ctx context.Context, obj store.Object) error {
	return s.write(ctx, opUpdate, obj, obj.GetMetadata().GetResourceVersion())
}

func (s *Store) write(ctx context.Context, kind opKind, obj store.Object, expect uint64) error {
	k := store.KindOf(obj)
	name := obj.GetMetadata().GetName()
	if k == "" || name == "" {
		return fmt.Errorf("store: %T needs a kind and a name", obj)
	}
	data, err := proto.Marshal(obj)
	if err != nil {
		return fmt.Errorf("encode %s/%s: %w", k, name, err)
	}
	o := &op{kind: kind, bucket: k, name: name, expect: expect, data: data, event: proto.Clone(obj).(store.Object)}
	if err := s.submit(ctx, o); err != nil {
		return fmt.Errorf("write %s/%s: %w", k, name, err)
	}
	obj.GetMetadata().ResourceVersion = o.version
	return nil
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, kind store.Kind, name string, version uint64) error {
	o := &op{kind: opDelete, bucket: kind, name: name, expect: version}
	if err := s.submit(ctx, o); err != nil {
		return fmt.Errorf("delete %s/%s: %w", kind, name, err)
	}
	return nil
}

// submit hands o to the writer and waits for its commit. A caller that gives
// up early does not undo the write: it may still commit.
func (s *Store) submit(ctx context.Context, o *op) error {
	o.reply = make(chan struct{})
	select {
	case s.ops <- o:
	case <-s.done:
		return store.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-o.reply:
		return o.err
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closed:
		// Queued as the writer stopped: committed only if answered.
		select {
		case <-o.reply:
			return o.err
		default:
			return store.ErrClosed
		}
	}
}

// writer commits queued ops, as many as are waiting, in one transaction.
func (s *Store) writer() {
	defer close(s.closed)
	batch := make([]*op, 0, maxBatch)
	for {
		select {
		case o := <-s.ops:
			batch = append(batch[:0], o)
		case <-s.done:
			s.failQueued()
			return
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case o := <-s.ops:
				batch = append(batch, o)
			default:
				break drain
			}
		}
		s.commit(batch)
	}
}

func (s *Store) failQueued() {
	for {
		select {
		case o := <-s.ops:
			o.err = store.ErrClosed
			close(o.reply)
		default:
			return
		}
	}
}

// commit applies the batch in one transaction. Each op succeeds or fails on
// its own; a failed precondition leaves the others alone.
func (s *Store) commit(batch []*op) {
	rev := s.revision
	var events []store.Event
	err := s.db.Update(func(tx *bolt.Tx) error {
		events = events[:0]
		rev = s.revision
		for _, o := range batch {
			o.err = nil
			ev, err := apply(tx, o, rev+1)
			if err != nil {
				o.err = err
				continue
			}
			rev++
			o.version = rev
			events = append(events, ev)
		}
		var buf [8]byte
		binary.BigEndian.PutUint64(buf[:], rev)
		return tx.Bucket(metaBucket).Put(revisionKey, buf[:])
	})
	if err != nil {
		for _, o := range batch {
			o.err = fmt.Errorf("commit: %w", err)
			close(o.reply)
		}
		return
	}
	s.publish(rev, events)
	for _, o := range batch {
		close(o.reply)
	}
}

func apply(tx *bolt.Tx, o *op, rev uint64) (store.Event, error) {
	b := tx.Bucket([]byte(o.bucket))
	if b == nil {
		return store.Event{}, fmt.Errorf("store: unknown kind %q", o.bucket)
	}
	key := []byte(o.name)
	cur := b.Get(key)
	switch o.kind {
	case opCreate:
		if cur != nil {
			return store.Event{}, store.ErrExists
		}
	case opUpdate, opDelete:
		if cur == nil {
			return store.Event{}, store.ErrNotFound
		}
		// An update always names the version it read; a delete may skip it.
		have := binary.BigEndian.Uint64(cur)
		if have != o.expect && (o.kind == opUpdate || o.expect != 0) {
			return store.Event{}, store.ErrConflict
		}
	}
	if o.kind == opDelete {
		old, err := decode(o.bucket, cur)
		if err != nil {
			return store.Event{}, err
		}
		if err := b.Delete(key); err != nil {
			return store.Event{}, err
		}
		return store.Event{Type: store.Deleted, Kind: o.bucket, Object: old, Revision: rev}, nil
	}
	val := make([]byte, 8+len(o.data))
	binary.BigEndian.PutUint64(val, rev)
	copy(val[8:], o.data)
	if err := b.Put(key, val); err != nil {
		return store.Event{}, err
	}
	o.event.GetMetadata().ResourceVersion = rev
	return store.Event{Type: store.Put, Kind: o.bucket, Object: o.event, Revision: rev}, nil
}

// decode reads a stored value: the version, then the record. The version
// prefix is the truth; the copy inside the record is the one it was written
// over.
func decode(kind store.Kind, v []byte) (store.Object, error) {
	if len(v) < 8 {
		return nil, fmt.Errorf("store: corrupt %s record of %d bytes", kind, len(v))
	}
	obj, err := store.New(kind)
	if err != nil {
		return nil, err
	}
	if err := proto.Unmarshal(v[8:], obj); err != nil {
		return nil, fmt.Errorf("decode %s record: %w", kind, err)
	}
	if obj.GetMetadata() == nil {
		return nil, fmt.Errorf("store: %s record without metadata", kind)
	}
	obj.GetMetadata().ResourceVersion = binary.BigEndian.Uint64(v)
	return obj, nil
}
