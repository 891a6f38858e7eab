package bucket

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The clients file and the admin API's bodies are read strictly, as the
// configuration is: encoding/json alone matches field names without regard
// to case ({"Capacity": 5}) and lets a repeated field win silently, so
// objects are walked token by token here, names compared exactly and
// repeats refused.

// eachField calls f for every member of the JSON object in data, in order,
// refusing a repeated name and anything after the object.
func eachField(data []byte, f func(name string, raw json.RawMessage) error) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return jsonError(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("must be a JSON object, not %s", jsonKindOf(tok))
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return jsonError(err)
		}
		name := tok.(string) // object keys are strings
		if seen[name] {
			return fmt.Errorf("%q: given twice", name)
		}
		seen[name] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return jsonError(err)
		}
		if err := f(name, raw); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}

func jsonError(err error) error {
	if errors.Is(err, io.EOF) {
		return errors.New("unexpected EOF")
	}
	return errors.New(strings.TrimPrefix(err.Error(), "json: "))
}

func jsonKindOf(tok json.Token) string {
	switch tok.(type) {
	case json.Delim:
		return "array"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "boolean"
	}
	return "null"
}

// ParseLimits reads {"capacity": 10, "refill_rate": 1} strictly: both
// fields required and spelled exactly so, each once, capacity an integer
// literal, no other fields. Errors start with the field name ("capacity:
// must be a positive integer ...").
func ParseLimits(data []byte) (Limits, error) {
	var capRaw, rateRaw json.RawMessage
	err := eachField(data, func(name string, raw json.RawMessage) error {
		switch name {
		case "capacity":
			capRaw = raw
		case "refill_rate":
			rateRaw = raw
		default:
			return fmt.Errorf("unknown field %q (known: capacity, refill_rate)", name)
		}
		return nil
	})
	if err != nil {
		return Limits{}, err
	}
	if len(capRaw) == 0 || string(capRaw) == "null" {
		return Limits{}, errors.New("capacity: required")
	}
	if len(rateRaw) == 0 || string(rateRaw) == "null" {
		return Limits{}, errors.New("refill_rate: required")
	}
	c, err := strconv.ParseInt(string(capRaw), 10, 64)
	if err != nil || c < 1 || c > MaxCapacity {
		return Limits{}, errors.New("capacity: must be a positive integer at most 8388608")
	}
	r, err := strconv.ParseFloat(string(rateRaw), 64)
	if err != nil {
		return Limits{}, errors.New("refill_rate: must be a positive number of tokens per second, at most 1e9")
	}
	lim := Limits{Capacity: c, RefillRate: r}
	return lim, lim.Validate()
}

// parseClients reads a clients file's contents strictly for limiter l:
// {"clients": {"<key>": {"capacity": 10, "refill_rate": 1}, ...}}. Keys are
// validated and put in canonical form (two spellings of one client are an
// error), limits checked against l (see Limiter.Check). Every problem is
// reported, one per line, with the path of its field. An empty file, or
// one without "clients", is an empty set.
func parseClients(data []byte, l *Limiter) (map[string]Limits, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return map[string]Limits{}, nil
	}
	return parseClientSet(data, l, false)
}

// parseBulk reads the body of PUT /clients as parseClients reads a file,
// except that "clients" is required: a body without it is far more likely
// an empty template or a wrong file than a wish to remove every client's
// limits, which {"clients": {}} says.
func parseBulk(data []byte, l *Limiter) (map[string]Limits, error) {
	return parseClientSet(data, l, true)
}

func parseClientSet(data []byte, l *Limiter, required bool) (map[string]Limits, error) {
	m := map[string]Limits{}
	spelled := map[string]string{} // canonical key to the spelling that gave it
	var problems []string
	given := false
	err := eachField(data, func(name string, raw json.RawMessage) error {
		if name != "clients" {
			return fmt.Errorf("unknown field %q (known: clients)", name)
		}
		given = true
		err := eachField(raw, func(key string, raw json.RawMessage) error {
			where := fmt.Sprintf("clients[%q]", key)
			c, err := l.checkKey(key)
			if err != nil {
				problems = append(problems, where+": "+err.Error())
				return nil
			}
			if first, dup := spelled[c]; dup {
				problems = append(problems, fmt.Sprintf("%s: the same client as clients[%q] (both are %s)", where, first, c))
				return nil
			}
			spelled[c] = key
			lim, err := ParseLimits(raw)
			if err == nil {
				err = l.Check(lim)
			}
			if err != nil {
				problems = append(problems, where+fieldSep(err)+err.Error())
				return nil
			}
			m[c] = lim
			return nil
		})
		if err != nil {
			return fmt.Errorf("clients: %w", err)
		}
		return nil
	})
	if err == nil && required && !given {
		err = errors.New(`clients: required; {"clients": {}} removes every client's limits`)
	}
	if err != nil {
		problems = append([]string{err.Error()}, problems...)
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "\n"))
	}
	return m, nil
}

// fieldSep joins a path and an error about one of its fields with a dot
// (clients["k"].capacity: ...), any other error with a colon.
func fieldSep(err error) string {
	if msg := err.Error(); strings.HasPrefix(msg, "capacity:") || strings.HasPrefix(msg, "refill_rate:") {
		return "."
	}
	return ": "
}

// checkKey validates key and returns its canonical form (see
// CanonicalKey). A key that looks like an address but is not written as
// one is refused (see notAnAddress).
func (l *Limiter) checkKey(key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	k, err := l.parseKey(key)
	if err != nil {
		return "", err
	}
	if k.kind == KeyIP {
		return k.addr.text(l.v6bits), nil
	}
	if err := l.notAnAddress(key); err != nil {
		return "", err
	}
	return key, nil
}

// notAnAddress refuses an API key that looks like an address or network
// written otherwise than CanonicalKey reads one: listed, it would be an
// API key that no client's address ever matches. In brackets or with a
// port ("[::1]", "1.2.3.4:80"), IPv4 with leading zeros, which some
// programs read as octal ("01.2.3.4"), three or four numbers that are no
// IPv4 address ("1.2.3", "1.2.3.256"), an address with a bad prefix length
// ("1.2.3.4/33"). The error names the canonical spelling when there is one.
func (l *Limiter) notAnAddress(key string) error {
	// refuse says why key is refused and, when as (key respelled) is an
	// address, its canonical form.
	refuse := func(why, as string) error {
		k, err := l.parseKey(as)
		if err != nil {
			return err
		}
		msg := fmt.Sprintf("key: %s looks like an address, but %s", key, why)
		if k.kind == KeyIP {
			msg += ": use " + k.addr.text(l.v6bits)
		}
		return errors.New(msg)
	}
	if ap, err := netip.ParseAddrPort(key); err == nil {
		return refuse("an address is written without a port", ap.Addr().String())
	}
	if inner, ok := strings.CutPrefix(key, "["); ok && strings.HasSuffix(inner, "]") {
		inner = inner[:len(inner)-1]
		if k, err := l.parseKey(inner); err != nil || k.kind == KeyIP {
			return refuse("an address is written without brackets", inner)
		}
	}
	addr, bits, slash := strings.Cut(key, "/")
	if v4, ok := dottedDecimal(addr); ok {
		if v4 == "" {
			return fmt.Errorf("key: %s looks like an IPv4 address, but an IPv4 address is four numbers from 0 to 255", key)
		}
		if v4 != addr {
			if slash {
				v4 += "/" + bits
			}
			return refuse("an IPv4 address is written without leading zeros, which some programs read as octal", v4)
		}
	}
	if _, err := netip.ParseAddr(addr); err == nil && slash {
		return fmt.Errorf("key: %s looks like a network, but /%s is not a prefix length for %s", key, bits, addr)
	}
	return nil
}

// dottedDecimal reports whether s is three or four decimal numbers
// separated by dots, and when it is four, each at most 255, returns it as
// an IPv4 address without leading zeros (else "").
func dottedDecimal(s string) (v4 string, ok bool) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 && len(parts) != 4 {
		return "", false
	}
	nums := make([]string, len(parts))
	for i, p := range parts {
		if p == "" || strings.Trim(p, "0123456789") != "" {
			return "", false
		}
		n, err := strconv.ParseUint(p, 10, 8)
		if err != nil {
			return "", true
		}
		nums[i] = strconv.FormatUint(n, 10)
	}
	if len(parts) != 4 {
		return "", true
	}
	return strings.Join(nums, "."), true
}

// ValidateKey reports whether key can name a client: not empty, at most
// DefaultMaxKeyLen bytes, valid UTF-8 (JSON could not keep it otherwise),
// no control characters.
func ValidateKey(key string) error {
	switch {
	case key == "":
		return errors.New("key: must not be empty")
	case len(key) > DefaultMaxKeyLen:
		return fmt.Errorf("key: must be at most %d bytes", DefaultMaxKeyLen)
	case !utf8.ValidString(key):
		return errors.New("key: must be valid UTF-8")
	case strings.ContainsFunc(key, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return errors.New("key: must not contain control characters")
	case key == "." || key == "..":
		// They cannot be addressed as /clients/{key}: HTTP path cleaning
		// turns them into other paths.
		return errors.New(`key: "." and ".." are not allowed`)
	}
	return nil
}

// clientsFile is the clients file's form; keys sorted by encoding/json.
type clientsFile struct {
	Clients map[string]Limits `json:"clients"`
}

func encodeClients(m map[string]Limits) []byte {
	data, _ := json.MarshalIndent(clientsFile{m}, "", "  ") // plain values: cannot fail
	return append(data, '\n')
}

// sortedKeys is for stable messages.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
