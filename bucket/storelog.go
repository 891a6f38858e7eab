package bucket

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The change log beside the clients file (clients.json.log for
// clients.json) is a line per record, "<crc32 in 8 hex digits> <JSON>",
// appended and fsynced before a change is acknowledged:
//
//	{"base": "<sha256>"}                     first line: the clients file it extends
//	{"seq": 7, "key": "k", "set": {...}, "old": {...}}   a change ("set" absent: deleted;
//	                                         "old" absent: there were none)
//	{"snapshot": "<sha256>", "through": 7}   a new clients file, holding changes up to 7,
//	                                         is about to replace the old one
//
// Reading the clients file and then the log gives the current set: when
// the file is the log's base, every change is replayed; when it is the
// snapshot of the last marker (a crash after the rename, before the log was
// renewed), the changes after that marker's "through". A last line cut short
// or failing its checksum is a write that was never acknowledged, and is
// dropped; any other bad line is damage, and an error.
type logRecord struct {
	Base    string  `json:"base,omitempty"`
	Seq     uint64  `json:"seq,omitempty"`
	Key     string  `json:"key,omitempty"`
	Set     *Limits `json:"set,omitempty"`
	Old     *Limits `json:"old,omitempty"`
	Snap    string  `json:"snapshot,omitempty"`
	Through uint64  `json:"through,omitempty"`
}

func (r logRecord) isChange() bool { return r.Seq != 0 }

func encodeRecord(r logRecord) []byte {
	js, _ := json.Marshal(r) // plain values: cannot fail
	line := make([]byte, 0, len(js)+10)
	line = fmt.Appendf(line, "%08x ", crc32.ChecksumIEEE(js))
	return append(append(line, js...), '\n')
}

// readLog returns the records of the log at path and the length of its
// good part (shorter than the file when the last write was torn). A missing
// log has no records.
func readLog(path string) (recs []logRecord, good int64, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	for n := 1; len(data) > int(good); n++ {
		rest := data[good:]
		i := bytes.IndexByte(rest, '\n')
		r, ok := parseRecord(rest, i)
		if !ok {
			if i < 0 || bytes.IndexByte(rest[i+1:], '\n') < 0 && len(bytes.TrimSpace(rest[i+1:])) == 0 {
				return recs, good, nil // the last write, torn: never acknowledged
			}
			return nil, 0, fmt.Errorf("change log %s: line %d is damaged", path, n)
		}
		recs = append(recs, r)
		good += int64(i + 1)
	}
	return recs, good, nil
}

func parseRecord(rest []byte, nl int) (logRecord, bool) {
	var r logRecord
	if nl < 10 || rest[8] != ' ' {
		return r, false
	}
	sum, err := strconv.ParseUint(string(rest[:8]), 16, 32)
	js := rest[9:nl]
	if err != nil || uint32(sum) != crc32.ChecksumIEEE(js) || json.Unmarshal(js, &r) != nil {
		return r, false
	}
	return r, true
}

func hashOf(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// replay applies the log's changes to m, the clients file's set whose hash
// is h. It reports false when the file is neither the log's base nor its
// last snapshot: someone else wrote it (see merge).
func replay(m map[string]Limits, h string, recs []logRecord) bool {
	if len(recs) == 0 {
		return true
	}
	var from uint64
	switch {
	case recs[0].Base == h:
	default:
		found := false
		for _, r := range recs {
			if r.Snap == h {
				found, from = true, r.Through
			}
		}
		if !found {
			return false
		}
	}
	for _, r := range recs {
		if r.isChange() && r.Seq > from {
			apply(m, r)
		}
	}
	return true
}

func apply(m map[string]Limits, r logRecord) {
	if r.Set != nil {
		m[r.Key] = *r.Set
	} else {
		delete(m, r.Key)
	}
}

// merge applies to m, a clients file edited by hand since the log began,
// the logged changes of keys the edit left as the change found them; where
// the edit changed a key the log also changed, the edit (the later word)
// stands, and the key is returned so that the caller can say so.
func merge(m map[string]Limits, recs []logRecord) (overruled []string) {
	seen := map[string]bool{}
	for _, r := range recs {
		if !r.isChange() {
			continue
		}
		cur, has := m[r.Key]
		if has == (r.Old != nil) && (!has || cur == *r.Old) {
			apply(m, r)
		} else if !seen[r.Key] {
			seen[r.Key] = true
			overruled = append(overruled, r.Key)
		}
	}
	return overruled
}

// writeFileSync writes data to a new temporary file in dir, fsynced, and
// returns its name.
func writeFileSync(dir, prefix string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, prefix+"*")
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// syncDir makes renames in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// resolve returns the file a clients_file path stands for: itself, or the
// target of a symlink, so that writes go through to the target rather than
// replace the link with a regular file. A link to nothing is an error.
func resolve(path string) (string, error) {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		return path, nil
	}
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", fmt.Errorf("%s is a symlink to a file that cannot be reached: %w", path, err)
	}
	return target, nil
}

// tempPlace returns the directory of file and the prefix of its temporary
// files, which OpenStore removes when a crash left them.
func tempPlace(file string) (dir, prefix string) {
	dir, base := filepath.Split(file)
	return filepath.Clean(dir + "."), "." + base + ".tmp-"
}

func removeFile(name string) { os.Remove(name) }

// logKey is a client key as logs may show it: an address or prefix as it
// is, an API key as its KeyTag.
func logKey(key string) string {
	if strings.ContainsAny(key, ".:") {
		if _, err := netip.ParsePrefix(key); err == nil {
			return key
		}
		if _, err := netip.ParseAddr(key); err == nil {
			return key
		}
	}
	return "key:" + KeyTag(key)
}
