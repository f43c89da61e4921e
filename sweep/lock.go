package sweep

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// DefaultLockStale is how long a configuration's lock may go without a
// heartbeat before another worker takes it over.
const DefaultLockStale = 10 * time.Minute

// Configuration locks.
//
// A worker that runs a configuration first creates DIR/state/<name>.lock
// with O_CREATE|O_EXCL: exactly one of the workers that try at the same
// time succeeds, on a local disk and on shared filesystems whose exclusive
// create is atomic (NFSv3 and later, CephFS, Lustre, GPFS, SMB, and the
// volumes Kubernetes mounts from them). NFSv2, and object-store mounts such
// as s3fs or gcsfuse, do not make exclusive create atomic: do not share an
// output folder over them between machines. The lock holds its owner (host,
// process id, start time and a random token per sweep run, so that two
// runs in one process are told apart) for the progress messages.
//
// While it runs the configuration, the owner refreshes the lock's
// modification time every stale/5 (the heartbeat). A lock whose
// modification time is older than stale (DefaultLockStale) belongs to a
// worker that died without removing it (a killed pod, a lost node) and is
// taken over. Taking over is itself guarded by an exclusive-create
// <name>.lock.takeover file, and the stale lock is removed only if it is
// still the same file with the same time as when it was judged stale, so
// two workers never both take over one lock. A takeover file left by a
// worker that died mid-takeover is removed once it is older than stale.
//
// Limits: the heartbeat is compared with the reader's clock, so the
// workers' clocks must agree to well within stale (NTP does this), and
// stale must exceed the heartbeat plus the filesystem's attribute caching
// (up to a minute on NFS), hence minutes rather than seconds; a worker
// stalled for longer than stale (a suspended machine) loses its lock, and
// notices at its next heartbeat and stops that configuration (a worker
// that took it over computes the same result, and every file is written
// atomically, so the worst outcome is duplicated work, never a corrupt
// file).

// lockOwner is what a lock file records.
type lockOwner struct {
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	Token   string    `json:"token"`
	Shard   string    `json:"shard,omitempty"`
}

func (o lockOwner) String() string {
	if o.Host == "" {
		return "another worker"
	}
	s := fmt.Sprintf("%s (pid %d", o.Host, o.PID)
	if o.Shard != "" {
		s += ", shard " + o.Shard
	}
	return s + ", since " + o.Started.UTC().Format(time.RFC3339) + ")"
}

// locker takes configuration locks for one sweep run.
type locker struct {
	owner lockOwner
	stale time.Duration
}

func newLocker(shard Shard, stale time.Duration) (*locker, error) {
	if stale <= 0 {
		stale = DefaultLockStale
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("sweep: lock token: %w", err)
	}
	return &locker{stale: stale, owner: lockOwner{
		Host: host, PID: os.Getpid(), Started: time.Now().UTC().Truncate(time.Second),
		Token: hex.EncodeToString(b[:]), Shard: shard.String(),
	}}, nil
}

// lockPath returns the lock file of cfg.
func lockPath(out string, cfg Config) string {
	return filepath.Join(out, StateDir, cfg.Name()+".lock")
}

// heldLock is a lock this run holds; release removes it.
type heldLock struct {
	path  string
	token string
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

// tryLock takes the lock at path. It returns the held lock, or nil and the
// owner of a lock that another live worker holds.
func (l *locker) tryLock(path string) (*heldLock, lockOwner, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, lockOwner{}, fmt.Errorf("create state folder: %w", err)
	}
	h, err := l.create(path)
	if h != nil || err != nil {
		return h, lockOwner{}, err
	}
	owner, info, err := readLock(path)
	if errors.Is(err, fs.ErrNotExist) {
		// Released between the two calls: try once more.
		h, err := l.create(path)
		return h, lockOwner{}, err
	}
	if err != nil {
		return nil, lockOwner{}, err
	}
	if time.Since(info.ModTime()) <= l.stale {
		return nil, owner, nil
	}
	h, err = l.takeOver(path, info)
	return h, owner, err
}

// create makes the lock file exclusively; nil without an error when it
// exists.
func (l *locker) create(path string) (*heldLock, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	data, _ := json.Marshal(l.owner)
	_, werr := f.Write(append(data, '\n'))
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(path)
		return nil, fmt.Errorf("lock %s: %w", path, werr)
	}
	return &heldLock{path: path, token: l.owner.Token}, nil
}

// takeOver replaces the stale lock at path, last seen as seen.
func (l *locker) takeOver(path string, seen fs.FileInfo) (*heldLock, error) {
	guard := path + ".takeover"
	f, err := os.OpenFile(guard, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		// Another worker is taking it over; a guard left by a worker
		// that died mid-takeover is cleared for the next attempt.
		if st, err := os.Stat(guard); err == nil && time.Since(st.ModTime()) > l.stale {
			os.Remove(guard)
		}
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("take over stale lock %s: %w", path, err)
	}
	f.Close()
	defer os.Remove(guard)
	_, st, err := readLock(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("take over stale lock %s: %w", path, err)
	case !os.SameFile(st, seen) || !st.ModTime().Equal(seen.ModTime()):
		// A new owner, or a heartbeat, since it was judged stale.
		return nil, nil
	default:
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("take over stale lock %s: %w", path, err)
		}
	}
	return l.create(path)
}

// readLock returns the owner recorded in a lock file and its file
// information. A lock whose content is not (yet) written has a zero owner.
// The information is taken from the opened file: on NFS, opening
// revalidates the cached attributes (close-to-open consistency), so the
// modification time is the server's, not a cached one.
func readLock(path string) (lockOwner, fs.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return lockOwner{}, nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return lockOwner{}, nil, err
	}
	var o lockOwner
	if data, err := io.ReadAll(io.LimitReader(f, 1<<16)); err == nil {
		_ = json.Unmarshal(data, &o) // an empty or partial file is still a lock
	}
	return o, info, nil
}

// heartbeat refreshes the lock's time every stale/5 until release, and
// calls lost (once) when the lock is no longer this run's.
func (l *locker) heartbeat(h *heldLock, lost func(by lockOwner)) {
	h.stop, h.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(h.done)
		t := time.NewTicker(max(l.stale/5, time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
			owner, _, err := readLock(h.path)
			if errors.Is(err, fs.ErrNotExist) || (err == nil && owner.Token != h.token) {
				lost(owner)
				return
			}
			now := time.Now()
			_ = os.Chtimes(h.path, now, now) // a failed refresh is retried at the next tick
		}
	}()
}

// release stops the heartbeat and removes the lock if it is still this
// run's.
func (h *heldLock) release() {
	h.once.Do(func() {
		if h.stop != nil {
			close(h.stop)
			<-h.done
		}
		if owner, _, err := readLock(h.path); err == nil && owner.Token == h.token {
			os.Remove(h.path)
		}
	})
}
