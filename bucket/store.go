package bucket

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Store is the durable set of listed clients' limits: the clients file,
// {"clients": {"<key>": {"capacity": 10, "refill_rate": 1}, ...}}, which an
// operator may edit by hand, and beside it a change log (see storelog.go).
//
// A change (Put, Delete) is appended to the log and fsynced before the
// method returns: its cost does not grow with the number of clients. Run
// folds the log into a new clients file in the background (written to a
// temporary file, fsynced, renamed over the old one, the directory fsynced)
// a second after changes stop, or every 4096 changes, and on shutdown. A
// crash at any point leaves a clients file and a log that together hold
// every acknowledged change; a torn last log line is dropped. Replace writes
// a whole new set the same way, atomically. Files are created 0600: they
// name API keys. A symlinked clients file is written through to its target.
//
// The Store never overwrites a clients file it did not write or read last:
// when the file changed on disk (size, modification time or inode), or the
// configured path now leads elsewhere (a symlink re-pointed), changes fail
// with ErrChangedOnDisk until Reload reads it. Reload keeps the logged
// changes the hand edit did not touch, and logs the keys where the edit
// overruled one.
//
// Keys are kept in canonical form (Limiter.CanonicalKey), limits checked
// with Limiter.Check, and every change is applied to the Limiter in the
// order it is made on disk. A Store is safe for concurrent use; changes are
// serialised. Create it with OpenStore; the zero value is not usable.
type Store struct {
	path string // clients_file as configured
	l    *Limiter
	kick chan struct{} // a change was logged: Run compacts soon

	// mu guards everything below and serialises writes. It is held across
	// the file I/O of a change on purpose: an fsync of one log line is
	// short, and the admin API is not on the request path.
	mu      sync.Mutex
	file    string      // the file written: path, or its symlink's target
	fileFI  fs.FileInfo // the clients file as last read or written; nil: absent
	log     *os.File    // the change log, open for appending
	logFI   fs.FileInfo
	logSize int64
	base    string            // hash of the clients file the log extends
	m       map[string]Limits // the current set; changed in place under mu
	seq     uint64            // last change logged
	recent  []logRecord       // changes logged since the clients file was written
	folded  uint64            // the last change the clients file holds
	warned  bool              // the file's change on disk has been logged

	// Compaction thresholds; tests lower them.
	compactAfter time.Duration
	compactEvery int
}

// ErrChangedOnDisk is returned (wrapped) by changes made while the clients
// file has been changed on disk since the Store read or wrote it.
var ErrChangedOnDisk = errors.New("changed on disk since the balancer read it")

// OpenStore reads the clients file at path and its change log, checks
// every entry for l and applies the set to l (SetOverrides). A missing file
// is an empty set. A bad file is an error naming each problem, e.g.
// `clients file x.json: clients["abc"].capacity: must be a positive integer
// at most 8388608`; nothing is written then. Temporary files left by a
// crash are removed.
func OpenStore(path string, l *Limiter) (*Store, error) {
	s := &Store{path: path, l: l, kick: make(chan struct{}, 1), compactAfter: time.Second, compactEvery: 4096}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// CheckClientsFile reads the clients file at path and its log as
// OpenStore does, for l, without writing anything, and returns how many
// clients it lists.
func CheckClientsFile(path string, l *Limiter) (int, error) {
	file, err := resolve(path)
	if err != nil {
		return 0, fmt.Errorf("clients file %s: %w", path, err)
	}
	m, _, _, _, _, err := read(file, l)
	return len(m), err
}

// read returns the set that the clients file at file and its log hold, the
// file's hash, its FileInfo (nil: absent), the log's records and good
// length, and the keys where a hand edit overruled a logged change.
func read(file string, l *Limiter) (m map[string]Limits, h string, fi fs.FileInfo, recs []logRecord, overruled []string, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("clients file %s: %w", file, err)
		}
	}()
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		data, err = nil, nil
	} else if err == nil {
		fi, err = os.Stat(file)
	}
	if err != nil {
		return nil, "", nil, nil, nil, err
	}
	if m, err = parseClients(data, l); err != nil {
		return nil, "", nil, nil, nil, err
	}
	h = hashOf(data)
	recs, _, err = readLog(file + ".log")
	if err != nil {
		return nil, "", nil, nil, nil, err
	}
	for _, r := range recs {
		if r.isChange() && r.Set != nil {
			if err := l.Check(*r.Set); err != nil {
				return nil, "", nil, nil, nil, fmt.Errorf("change log: %q: %w", r.Key, err)
			}
		}
	}
	if !replay(m, h, recs) {
		overruled = merge(m, recs)
	}
	return m, h, fi, recs, overruled, nil
}

// load (re)reads the files, applies the set to the Limiter and makes the
// files consistent: a torn log tail is cut off, and a clients file edited
// by hand is folded with the log into a new clients file. Caller holds mu.
// On error nothing changes.
func (s *Store) load() error {
	file, err := resolve(s.path)
	if err != nil {
		return fmt.Errorf("clients file %s: %w", s.path, err)
	}
	m, h, fi, recs, overruled, err := read(file, s.l)
	if err != nil {
		return err
	}
	removeTemps(file)
	if s.log != nil {
		s.log.Close()
		s.log = nil
	}
	s.file, s.fileFI, s.m, s.warned = file, fi, m, false
	for _, k := range overruled {
		s.l.log.Warn("clients file: edited by hand where a change made through the admin API was not yet in it; the hand edit stands",
			"client", logKey(k))
	}
	s.l.SetOverrides(m)
	s.seq, s.folded = 0, 0
	for _, r := range recs {
		s.seq = max(s.seq, r.Seq, r.Through)
	}
	if len(recs) > 0 && len(overruled) == 0 && replay(map[string]Limits{}, h, recs) && recs[0].Base != "" {
		// The log extends this file: go on appending to it.
		s.base, s.recent = recs[0].Base, nil
		for _, r := range recs {
			if r.isChange() {
				s.recent = append(s.recent, r)
			}
		}
		return s.openLog()
	}
	// A log that does not extend this file: the file was edited by hand.
	// Write the set (the edit with the log's other changes) as the clients
	// file, marking the old log first, and start a new log.
	if len(recs) > 0 {
		if err := s.openLog(); err != nil {
			return err
		}
		return s.install(encodeClients(m), "", s.seq)
	}
	// No log: one is started with the first change.
	s.base, s.recent = h, nil
	return nil
}

func removeTemps(file string) {
	dir, prefix := tempPlace(file)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// openLog opens the existing log for appending, cutting off a torn tail.
func (s *Store) openLog() error {
	logPath := s.file + ".log"
	_, good, err := readLog(logPath)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(logPath, os.O_WRONLY, 0o600)
	if err == nil {
		if err = f.Truncate(good); err == nil {
			_, err = f.Seek(good, 0)
		}
	}
	if err == nil {
		s.logFI, err = f.Stat()
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		return fmt.Errorf("clients file %s: change log: %w", s.file, err)
	}
	s.log, s.logSize = f, good
	return nil
}

// newLog replaces the log with one extending s.base and holding recs,
// durably. Caller holds mu.
func (s *Store) newLog(recs []logRecord) error {
	data := encodeRecord(logRecord{Base: s.base})
	for _, r := range recs {
		data = append(data, encodeRecord(r)...)
	}
	dir, prefix := tempPlace(s.file)
	tmp, err := writeFileSync(dir, prefix, data)
	if err == nil {
		if err = os.Rename(tmp, s.file+".log"); err != nil {
			os.Remove(tmp)
		}
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("clients file %s: change log: %w", s.file, err)
	}
	if s.log != nil {
		s.log.Close()
		s.log = nil
	}
	return s.openLog()
}

// install makes data (the clients file's new contents, holding every
// change up to through) the clients file: written to a temporary file
// unless tmp names one already, a marker logged, renamed into place, the
// directory fsynced, and a new log started with the changes after through.
// Caller holds mu.
func (s *Store) install(data []byte, tmp string, through uint64) error {
	dir, prefix := tempPlace(s.file)
	var err error
	if tmp == "" {
		if tmp, err = writeFileSync(dir, prefix, data); err != nil {
			return fmt.Errorf("clients file %s: %w", s.file, err)
		}
	}
	h := hashOf(data)
	if s.log != nil {
		if err := s.appendLog(logRecord{Snap: h, Through: through}); err != nil {
			os.Remove(tmp)
			return err
		}
	}
	if err := os.Rename(tmp, s.file); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("clients file %s: %w", s.file, err)
	}
	err = syncDir(dir)
	if fi, serr := os.Stat(s.file); serr == nil {
		s.fileFI = fi
	}
	if err != nil {
		return fmt.Errorf("clients file %s: %w", s.file, err)
	}
	var rest []logRecord
	for _, r := range s.recent {
		if r.Seq > through {
			rest = append(rest, r)
		}
	}
	s.base, s.recent, s.folded = h, rest, through
	return s.newLog(rest)
}

// appendLog writes one record to the log and fsyncs it. On error the log
// is cut back to where it was. Caller holds mu.
func (s *Store) appendLog(r logRecord) error {
	line := encodeRecord(r)
	_, err := s.log.Write(line)
	if err == nil {
		err = s.log.Sync()
	}
	if err != nil {
		s.log.Truncate(s.logSize)
		s.log.Seek(s.logSize, 0)
		return fmt.Errorf("clients file %s: change log: %w", s.file, err)
	}
	s.logSize += int64(len(line))
	return nil
}

// diskChange says how the clients file or its log is not the one the
// Store last read or wrote, or "" when they are: the configured path now
// leads to another file (a symlink re-pointed, as ln -sfn does, or a link
// put in place of the file or the other way round), or the file was
// edited, replaced or removed, or its log replaced. A few stats, whatever
// the number of clients. Caller holds mu.
func (s *Store) diskChange() string {
	file, err := resolve(s.path)
	switch {
	case err != nil:
		return err.Error()
	case file != s.file:
		return fmt.Sprintf("%s now leads to %s, not %s", s.path, file, s.file)
	}
	const edited = "edited, replaced or removed"
	fi, err := os.Stat(s.file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if s.fileFI != nil {
			return edited
		}
	case err != nil:
		return err.Error()
	case s.fileFI == nil:
		return edited
	case !os.SameFile(fi, s.fileFI) || fi.Size() != s.fileFI.Size() || !fi.ModTime().Equal(s.fileFI.ModTime()):
		return edited
	}
	if s.log == nil {
		return ""
	}
	if lfi, err := os.Stat(s.file + ".log"); err != nil || !os.SameFile(lfi, s.logFI) {
		return "its change log replaced or removed"
	}
	return ""
}

// conflict returns the error of a change refused because of what
// diskChange found (why), and logs it once.
func (s *Store) conflict(why string) error {
	if !s.warned {
		s.warned = true
		s.l.log.Warn("clients file changed on disk since the balancer read it: admin changes are refused until a reload reads it",
			"clients_file", s.path, "change", why)
	}
	return fmt.Errorf("clients file %s: %w (%s); reload (SIGHUP or POST /reload) to read it, then retry: %w",
		s.path, ErrChangedOnDisk, why, errNothingWritten)
}

var errNothingWritten = errors.New("nothing was written")

// Path returns the clients file as configured.
func (s *Store) Path() string { return s.path }

// Len returns how many clients are listed.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// All returns a copy of every listed client's limits.
func (s *Store) All() map[string]Limits {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.m)
}

// Get returns the limits of the client key (in any spelling) and whether
// it has any.
func (s *Store) Get(key string) (Limits, bool) {
	c, err := s.l.checkKey(key)
	if err != nil {
		return Limits{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	lim, ok := s.m[c]
	return lim, ok
}
