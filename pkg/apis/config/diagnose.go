package config

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// This file finds what the decoder alone cannot say well: where in the file
// each field is, keys set twice, documents after the first, and which field
// holds a value of the wrong type.

// document is what the YAML parser tells about the file beyond its values.
type document struct {
	// parsed is false when the YAML parser refused the file; the other
	// fields are then empty and the decoder's own messages are used.
	parsed bool
	// documents counts the non-empty YAML documents ("---" separated)
	// read, before any error.
	documents int
	// lines maps a field path (as field.Path prints it) to its line.
	lines map[string]int
	// duplicates are the keys set twice in one mapping.
	duplicates field.ErrorList
}

// maxIndexDepth bounds how deep the index descends. The configuration is
// far shallower; deeper values are type errors, found by other means.
const maxIndexDepth = 32

func indexDocument(data []byte) (d *document) {
	d = &document{lines: map[string]int{}}
	defer func() {
		// Only diagnostics depend on this parser: should it fail in an
		// unexpected way, fall back to the decoder's messages.
		if r := recover(); r != nil {
			d = &document{lines: map[string]int{}}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// Keep the count: a broken document after a good one is still
			// a second document.
			return &document{lines: map[string]int{}, documents: d.documents}
		}
		if isEmptyDocument(&n) {
			continue
		}
		if d.documents == 0 {
			d.index(&n, nil, 0)
		}
		d.documents++
	}
	d.parsed = true
	return d
}

func isEmptyDocument(n *yaml.Node) bool {
	if n.Kind != yaml.DocumentNode {
		return false
	}
	for _, c := range n.Content {
		if !(c.Kind == yaml.ScalarNode && c.Tag == "!!null") {
			return false
		}
	}
	return true
}

func (d *document) index(n *yaml.Node, p *field.Path, depth int) {
	if depth > maxIndexDepth {
		return
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			d.index(c, p, depth+1)
		}
	case yaml.MappingNode:
		first := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
				continue
			}
			var cp *field.Path
			if p == nil {
				cp = field.NewPath(k.Value)
			} else {
				cp = p.Child(k.Value)
			}
			if line, seen := first[k.Value]; seen {
				d.duplicates = append(d.duplicates, &field.Error{
					Type:     field.ErrorTypeDuplicate,
					Field:    cp.String(),
					BadValue: field.OmitValueType{},
					Detail:   fmt.Sprintf("set on line %d and again on line %d: keep one", line, k.Line),
				})
			} else {
				first[k.Value] = k.Line
			}
			// The decoder keeps the last value of a duplicate key; so do the lines.
			d.lines[cp.String()] = k.Line
			d.index(v, cp, depth+1)
		}
	case yaml.SequenceNode:
		if p == nil {
			return
		}
		for i, c := range n.Content {
			cp := p.Index(i)
			d.lines[cp.String()] = c.Line
			d.index(c, cp, depth+1)
		}
	}
}

// line returns the line of path in the file, or of its nearest ancestor
// that is written there (a missing field is reported at its parent); 0 if
// none is.
func (d *document) line(path string) int {
	for path != "" {
		if l, ok := d.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i <= 0 {
			return 0
		}
		path = path[:i]
	}
	return 0
}

var (
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	durationType        = reflect.TypeFor[metav1.Duration]()
)

// checkTypes walks v (the file as generic JSON values) along the Go type t
// it decodes into, and appends an error for every value of the wrong type.
// It returns what should stand in for v so that the rest of the file can
// be decoded and validated without follow-up errors: v itself, v repaired,
// or nothing (keep false: the caller removes the field). Unknown fields are
// left alone: strict decoding reports them.
func checkTypes(v any, t reflect.Type, p *field.Path, errs *field.ErrorList) (fixed any, keep bool) {
	if v == nil {
		// null decodes as the zero value (unset), except into a type that
		// decodes null itself and refuses it (metav1.Duration): remove it
		// there, so that it is unset too.
		return nil, !(t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(jsonUnmarshalerType))
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if pt := reflect.PointerTo(t); pt.Implements(jsonUnmarshalerType) || pt.Implements(textUnmarshalerType) {
		return checkLeaf(v, t, p, errs)
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			*errs = append(*errs, typeError(p, v, t))
			return nil, false
		}
		fields := jsonFields(t)
		for _, k := range sortedKeys(m) {
			if ft, known := fields[k]; known {
				setOrDelete(m, k, ft, p.Child(k), errs)
			}
		}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return checkLeaf(v, t, p, errs) // []byte is a base64 string
		}
		l, ok := v.([]any)
		if !ok {
			*errs = append(*errs, typeError(p, v, t))
			return nil, false
		}
		for i := range l {
			// Indices must not shift: a bad element becomes null (zero).
			l[i], _ = checkTypes(l[i], t.Elem(), p.Index(i), errs)
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			*errs = append(*errs, typeError(p, v, t))
			return nil, false
		}
		for _, k := range sortedKeys(m) {
			setOrDelete(m, k, t.Elem(), p.Key(k), errs)
		}
	case reflect.Interface:
	default:
		return checkLeaf(v, t, p, errs)
	}
	return v, true
}

func setOrDelete(m map[string]any, k string, t reflect.Type, p *field.Path, errs *field.ErrorList) {
	if v, keep := checkTypes(m[k], t, p, errs); keep {
		m[k] = v
	} else {
		delete(m, k)
	}
}

// checkLeaf decodes a single value into t the way the whole file is decoded.
func checkLeaf(v any, t reflect.Type, p *field.Path, errs *field.ErrorList) (any, bool) {
	data, err := json.Marshal(v)
	if err == nil {
		err = json.Unmarshal(data, reflect.New(t).Interface())
	}
	if err == nil {
		return v, true
	}
	*errs = append(*errs, typeError(p, v, t))
	if t.Kind() == reflect.String && !isComposite(v) {
		// A number or boolean meant as a string (clientID: 1234): once
		// reported, use it as the string it was meant to be, so that what
		// depends on the field (say, the audience defaulted from clientID)
		// raises no follow-up errors.
		return fmt.Sprint(v), true
	}
	return nil, false
}

// typeError says what a field expects, showing the value found if it is
// short (a scalar) and its shape otherwise.
func typeError(p *field.Path, v any, t reflect.Type) *field.Error {
	var want string
	switch {
	case t == durationType:
		want = `must be a duration such as "30s", "15m", "1h30m" or "24h" (units: ns, us, ms, s, m, h)`
	case t.Kind() == reflect.String:
		want = "must be a string"
		if _, isString := v.(string); !isString && !isComposite(v) {
			want += ": put the value in quotes"
		}
	case t.Kind() == reflect.Bool:
		want = "must be true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uintptr:
		want = "must be a whole number"
		if n, ok := v.(json.Number); ok {
			if _, err := strconv.ParseInt(n.String(), 10, 64); err != nil && errors.Is(err, strconv.ErrRange) {
				want = "is too large"
			} else if t.Kind() >= reflect.Uint && strings.HasPrefix(n.String(), "-") {
				want = "must be a whole number, not negative"
			}
		}
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		want = "must be a number"
	case t.Kind() == reflect.Struct:
		want = "must be a mapping of fields (key: value)"
	case t.Kind() == reflect.Slice || t.Kind() == reflect.Array:
		want = "must be a list (lines starting with '- ', or [a, b])"
	case t.Kind() == reflect.Map:
		want = "must be a mapping (key: value)"
	default:
		want = "has the wrong type: see docs/configuration.md"
	}
	if isComposite(v) {
		return field.TypeInvalid(p, field.OmitValueType{}, want+", not "+describe(v))
	}
	return field.TypeInvalid(p, v, want)
}

func isComposite(v any) bool {
	switch v.(type) {
	case map[string]any, []any:
		return true
	}
	return false
}

func describe(v any) string {
	switch v.(type) {
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("a %T", v)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// jsonFields maps the JSON names of a struct's fields to their types, with
// the fields of embedded structs promoted as encoding/json promotes them
// (metav1.TypeMeta's apiVersion and kind, for one).
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	promoted := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					promoted[k] = v
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	for k, v := range promoted {
		if _, shadowed := out[k]; !shadowed {
			out[k] = v
		}
	}
	return out
}

// typeAt returns the Go type at a field path such as "clusters[0].access",
// or nil if the path does not lead anywhere in t.
func typeAt(t reflect.Type, path string) reflect.Type {
	deref := func(t reflect.Type) reflect.Type {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		return t
	}
	t = deref(t)
	for path != "" {
		switch {
		case path[0] == '[':
			end := strings.IndexByte(path, ']')
			if end < 0 || (t.Kind() != reflect.Slice && t.Kind() != reflect.Array && t.Kind() != reflect.Map) {
				return nil
			}
			t, path = deref(t.Elem()), path[end+1:]
		case path[0] == '.':
			path = path[1:]
		default:
			end := strings.IndexAny(path, ".[")
			if end < 0 {
				end = len(path)
			}
			if t.Kind() != reflect.Struct {
				return nil
			}
			ft, ok := jsonFields(t)[path[:end]]
			if !ok {
				return nil
			}
			t, path = deref(ft), path[end:]
		}
	}
	return t
}

// unknownField is the error for a field the configuration does not have,
// with the field it most likely meant, or the fields there are.
func unknownField(root reflect.Type, path string) *field.Error {
	parent, name := "", path
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		parent, name = path[:i], path[i+1:]
	}
	detail := "unknown field: remove it or fix its spelling (see docs/configuration.md)"
	if t := typeAt(root, parent); t != nil && t.Kind() == reflect.Struct {
		known := make([]string, 0)
		for k := range jsonFields(t) {
			known = append(known, k)
		}
		sort.Strings(known)
		if s := suggest(name, known); s != "" {
			detail = fmt.Sprintf("unknown field: did you mean %q?", s)
		} else {
			detail = "unknown field: remove it or use one of " + strings.Join(known, ", ")
		}
	}
	return &field.Error{Type: field.ErrorTypeForbidden, Field: path, BadValue: "", Detail: detail}
}

// suggest returns the known name closest to name, if it is close enough to
// be a misspelling of it.
func suggest(name string, known []string) string {
	best, bestDist := "", max(2, len(name)/3)
	for _, k := range known {
		if strings.EqualFold(k, name) {
			return k
		}
		if d := editDistance(strings.ToLower(name), strings.ToLower(k)); d <= bestDist && (best == "" || d < bestDist) {
			best, bestDist = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
