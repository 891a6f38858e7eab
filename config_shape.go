package main

// How a configuration file's JSON is read before its values are checked
// (validate, in config_check.go): every member name once, every field
// known and of its type, every number within its field's range.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"stdlb/bucket"
)

// repeatedFields appends a problem for every member name given twice in
// one object of data, a valid JSON document, naming its path and both
// places. encoding/json lets the last one win without a word, and other
// readers keep the first, so a file that says "capacity" twice says two
// things. The clients file and the admin API's bodies refuse repeats too
// (bucket's eachField); here every one is reported, with where it is.
func repeatedFields(data []byte, problems []string) []string {
	dec := json.NewDecoder(bytes.NewReader(data))
	at := func() string { // where the next token starts
		off := dec.InputOffset()
		off += int64(len(data[off:]) - len(bytes.TrimLeft(data[off:], " \t\r\n,:")))
		line, col := position(data, off+1)
		return fmt.Sprintf("line %d, column %d", line, col)
	}
	var value func(path string) error
	value = func(path string) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			first := map[string]string{} // name to where it was first given
			for dec.More() {
				where := at()
				tok, err := dec.Token()
				if err != nil {
					return err
				}
				name := tok.(string) // object keys are strings
				if w, dup := first[name]; dup {
					problems = append(problems, fmt.Sprintf("%s: given twice, at %s and at %s; say it once (JSON readers differ on which one counts)",
						joinPath(path, name), w, where))
				} else {
					first[name] = where
				}
				if err := value(joinPath(path, name)); err != nil {
					return err
				}
			}
		case json.Delim('['):
			for i := 0; dec.More(); i++ {
				if err := value(fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
		default:
			return nil
		}
		_, err = dec.Token() // the closing bracket
		return err
	}
	value("")
	return problems
}

// checkShape walks the decoded JSON against the Config type and reports, by
// field path, every unknown field, every value of the wrong type and every
// malformed duration. encoding/json stops at the first unknown field and
// names no path, and an operator fixing a file wants the whole list at once.
func checkShape(path string, v any, target any, problems []string) []string {
	return shapeOf(path, v, reflect.TypeOf(target).Elem(), problems)
}

var durationType = reflect.TypeFor[Duration]()

func shapeOf(path string, v any, t reflect.Type, problems []string) []string {
	if v == nil {
		return problems // null keeps the default
	}
	bad := func(want string) []string {
		return append(problems, fmt.Sprintf("%s: want %s, got %s", pathOrTop(path), want, jsonKind(v)))
	}
	if t == durationType {
		s, ok := v.(string)
		if !ok {
			return bad(`a duration string such as "5s"`)
		}
		if _, err := time.ParseDuration(s); err != nil {
			return append(problems, fmt.Sprintf("%s: %q is not a duration (use a number and a unit: 500ms, 2s, 1m)", path, s))
		}
		return problems
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return bad("an object")
		}
		fields := map[string]reflect.Type{}
		for f := range t.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			fields[name] = f.Type
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			p := joinPath(path, k)
			ft, ok := fields[k]
			if !ok {
				problems = append(problems, fmt.Sprintf("%s: unknown field (known: %s)", p, strings.Join(slices.Sorted(maps.Keys(fields)), ", ")))
				continue
			}
			problems = shapeOf(p, m[k], ft, problems)
		}
	case reflect.Slice:
		list, ok := v.([]any)
		if !ok {
			return bad("a list")
		}
		for i, e := range list {
			problems = shapeOf(fmt.Sprintf("%s[%d]", path, i), e, t.Elem(), problems)
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			return bad("a string")
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return bad("true or false")
		}
	case reflect.Int, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			return bad("a whole number")
		}
		if _, err := n.Int64(); err != nil {
			// 2.5 is no whole number. 5.0, 5e0 and 1e30 are, but
			// encoding/json reads none of them into an integer.
			f, err := strconv.ParseFloat(n.String(), 64)
			r := rangeOf(path)
			switch {
			case err == nil && f != math.Trunc(f):
				return bad("a whole number")
			case f >= r.lo && f <= r.hi:
				return append(problems, fmt.Sprintf("%s: write %s as %s, without a fraction or exponent", path, n, formatNumber(f)))
			case f > r.hi && r.hi >= math.MaxInt64: // "1 or more"
				return append(problems, fmt.Sprintf("%s: must be %s, and at most %d, got %s", path, r, math.MaxInt64, n))
			}
			return append(problems, fmt.Sprintf("%s: must be %s, got %s", path, r, n))
		}
	case reflect.Float64:
		n, ok := v.(json.Number)
		if !ok {
			return bad("a number")
		}
		if _, err := n.Float64(); err != nil { // 1e400
			return append(problems, fmt.Sprintf("%s: must be %s, got %s", path, rangeOf(path), n))
		}
	}
	return problems
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func pathOrTop(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}

func jsonKind(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("string %q", v)
	case json.Number:
		return "number " + v.String()
	case bool:
		return fmt.Sprint(v)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// numRange is the values a numeric field takes, from lo to hi.
type numRange struct {
	lo, hi float64
	say    string // how a message puts it; "" for "between lo and hi"
}

func (r numRange) String() string {
	if r.say != "" {
		return r.say
	}
	return "between " + formatNumber(r.lo) + " and " + formatNumber(r.hi)
}

// numRanges are the ranges of the numeric fields, by path without list
// indices: validate checks values against them, and shapeOf names them
// for a number too large to be read at all (1e30 for a whole number).
var numRanges = map[string]numRange{
	"backends[].weight":                {0, 1000, "between 1 and 1000 (0 or absent means 1)"},
	"health_check.healthy_threshold":   {1, math.MaxInt64, "1 or more"},
	"health_check.unhealthy_threshold": {1, math.MaxInt64, "1 or more"},
	"retries":                          {0, 10, ""},
	"max_header_bytes":                 {4096, 16 << 20, ""},
	"rate_limit.capacity":              {1, bucket.MaxCapacity, ""},
	"rate_limit.refill_rate":           {math.SmallestNonzeroFloat64, bucket.MaxRefillRate, "more than 0 and at most 1e9 tokens per second"},
	"rate_limit.max_key_length":        {1, 4096, ""},
	"rate_limit.max_clients":           {1, math.MaxInt64, "1 or more"},
	"rate_limit.instances":             {1, 1000, ""},
	"rate_limit.ipv6_prefix":           {16, 128, "between 16 and 128 (the bits of an IPv6 address that make one client)"},
	"runtime.gogc":                     {-1, math.MaxInt64, "-1 (off), 0 (runtime default) or a percentage"},
}

var listIndex = regexp.MustCompile(`\[[0-9]+\]`)

// rangeOf returns the range of the numeric field at path
// ("backends[2].weight").
func rangeOf(path string) numRange {
	return numRanges[listIndex.ReplaceAllString(path, "[]")]
}

// formatNumber writes v as a reader would: whole numbers in full
// (16777216, not 1.6777216e+07).
func formatNumber(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e21 {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
