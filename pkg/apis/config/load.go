// Package config loads portcullis-server's configuration file: strict
// decoding, defaults and validation, with every error reported at once.
package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"portcullis.dev/portcullis/pkg/apis/config/v1alpha1"
)

// MaxFileSize bounds the configuration file; anything larger is a mistake
// (or an attack), not a configuration.
const MaxFileSize = 1 << 20

var (
	scheme = runtime.NewScheme()
	codecs = serializer.NewCodecFactory(scheme, serializer.EnableStrict)
)

func init() {
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		panic(err)
	}
}

// Error is an invalid configuration: every problem, each with its field path.
type Error struct {
	Source string
	Errs   field.ErrorList
	// Lines maps field paths to their line in the file, where known; a
	// problem is shown with the line of its field, or of the nearest
	// enclosing field that is written in the file.
	Lines map[string]int
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s is not a valid configuration (%d problem", e.Source, len(e.Errs))
	if len(e.Errs) != 1 {
		b.WriteString("s")
	}
	b.WriteString("):")
	d := &document{lines: e.Lines}
	for _, fe := range e.Errs {
		b.WriteString("\n  - ")
		if l := d.line(fe.Field); l > 0 {
			fmt.Fprintf(&b, "line %d: ", l)
		}
		// Indent continuation lines (CEL errors point at the column).
		b.WriteString(strings.ReplaceAll(fe.Error(), "\n", "\n    "))
	}
	return b.String()
}

// Load reads, decodes, defaults and validates the configuration file at path.
func Load(path string) (*v1alpha1.PortcullisConfiguration, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading configuration: %w (give --config the path of a readable file)", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading configuration %s: %w", path, err)
	}
	return Decode(path, data)
}

var configType = reflect.TypeFor[v1alpha1.PortcullisConfiguration]()

// Decode decodes, defaults and validates a configuration held in memory;
// source names it in errors.
//
// Problems with the file as a whole (not YAML, empty, another kind) end
// decoding at once. Problems with fields do not: unknown fields, keys set
// twice, values of the wrong type and invalid values are all reported
// together, each with its field path, as an *Error.
func Decode(source string, data []byte) (*v1alpha1.PortcullisConfiguration, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes: that is not a configuration file", source, MaxFileSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%s is empty: start from artifacts/config/minimal.yaml or artifacts/config/portcullis.yaml", source)
	}
	// The file as generic values, as the decoder sees it.
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%s is not valid YAML: %s", source, strings.TrimPrefix(err.Error(), "error converting YAML to JSON: "))
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return nil, fmt.Errorf("%s cannot be decoded: %w", source, err)
	}
	root, isMap := tree.(map[string]any)
	switch {
	case tree == nil:
		return nil, fmt.Errorf("%s holds no configuration (only comments or null): start from artifacts/config/minimal.yaml", source)
	case !isMap:
		return nil, fmt.Errorf("%s must be a mapping of fields starting with apiVersion: %s and kind: PortcullisConfiguration, not %s", source, v1alpha1.SchemeGroupVersion, describe(tree))
	}
	if root["apiVersion"] != v1alpha1.SchemeGroupVersion.String() || root["kind"] != kind {
		return nil, fmt.Errorf("%s: the file must start with apiVersion: %s and kind: %s (it has apiVersion: %s, kind: %s)",
			source, v1alpha1.SchemeGroupVersion, kind, shortValue(root["apiVersion"]), shortValue(root["kind"]))
	}
	// The decoder would silently read the first document and ignore the
	// others, even broken ones.
	doc := indexDocument(data)
	switch {
	case doc.documents > 1:
		return nil, fmt.Errorf("%s holds %d YAML documents (separated by '---'): put the whole configuration in one", source, doc.documents)
	case !doc.parsed && doc.documents == 1:
		return nil, fmt.Errorf("%s holds more than one YAML document (separated by '---'), and one after the first is not valid YAML: put the whole configuration in one", source)
	}

	decoder := codecs.UniversalDecoder(v1alpha1.SchemeGroupVersion)
	obj, gvk, err := decoder.Decode(data, nil, nil)
	var errs field.ErrorList
	removed := map[string]bool{}
	if _, strict := runtime.AsStrictDecodingError(err); err != nil && !strict {
		// A value of the wrong type stops the decoder, and its message
		// lacks the field path (or is only the message of, say,
		// time.ParseDuration). Find every such value with its path, set it
		// aside and decode the rest, so that everything else is still
		// checked.
		var typeErrs field.ErrorList
		checkTypes(root, configType, nil, &typeErrs)
		rest, merr := json.Marshal(root)
		if merr != nil {
			return nil, fmt.Errorf("%s cannot be decoded: %w", source, err)
		}
		obj, gvk, err = decoder.Decode(rest, nil, nil)
		if _, strict := runtime.AsStrictDecodingError(err); err != nil && !strict {
			return nil, fmt.Errorf("%s cannot be decoded: %w", source, err)
		}
		// The decoder saw JSON without the original keys set twice.
		errs = append(errs, doc.duplicates...)
		errs = append(errs, typeErrs...)
		for _, e := range typeErrs {
			removed[e.Field] = true
		}
	}
	if strict, ok := runtime.AsStrictDecodingError(err); ok {
		// Keep going: the fields that did decode are validated too, so the
		// operator sees every problem in one go.
		errs = append(errs, strictErrors(strict.Errors(), doc)...)
	}
	cfg, ok := obj.(*v1alpha1.PortcullisConfiguration)
	if !ok || gvk == nil {
		return nil, fmt.Errorf("%s holds a %v, expected a PortcullisConfiguration", source, gvk)
	}
	cfg.APIVersion, cfg.Kind = gvk.GroupVersion().String(), gvk.Kind
	for _, e := range v1alpha1.Validate(cfg) {
		if !dependsOn(e, removed) {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		// In the order of the file (problems with fields that are not in
		// it, such as required ones, first).
		lines := make(map[*field.Error]int, len(errs))
		for _, e := range errs {
			lines[e] = doc.line(e.Field)
		}
		sort.SliceStable(errs, func(i, j int) bool { return lines[errs[i]] < lines[errs[j]] })
		return nil, &Error{Source: source, Errs: errs, Lines: doc.lines}
	}
	return cfg, nil
}

const kind = "PortcullisConfiguration"

var (
	unknownFieldRE   = regexp.MustCompile(`^unknown field "(.*)"$`)
	duplicateFieldRE = regexp.MustCompile(`^duplicate field "(.*)"$`)
)

// strictErrors turns the decoder's strict errors into field errors. Keys
// set twice are taken from the YAML index, which has their paths and lines
// (the decoder's YAML message has neither).
func strictErrors(strict []error, doc *document) field.ErrorList {
	var errs field.ErrorList
	duplicatesIndexed := false
	for _, e := range strict {
		msg := e.Error()
		if m := unknownFieldRE.FindStringSubmatch(msg); m != nil {
			errs = append(errs, unknownField(configType, m[1]))
			continue
		}
		isDuplicate := duplicateFieldRE.MatchString(msg) || strings.Contains(msg, "already set in map")
		switch {
		case isDuplicate && len(doc.duplicates) > 0:
			if !duplicatesIndexed {
				errs = append(errs, doc.duplicates...)
				duplicatesIndexed = true
			}
		case duplicateFieldRE.MatchString(msg):
			errs = append(errs, &field.Error{Type: field.ErrorTypeDuplicate, Field: duplicateFieldRE.FindStringSubmatch(msg)[1], BadValue: field.OmitValueType{}, Detail: "set more than once: keep one"})
		default:
			errs = append(errs, field.Invalid(field.NewPath("<file>"), "", msg+" (see docs/configuration.md)"))
		}
	}
	return errs
}

// pathTokenRE finds field paths mentioned in a message ("must not exceed
// tokens.maxLifetime").
var pathTokenRE = regexp.MustCompile(`[A-Za-z][A-Za-z0-9]*(?:\[[0-9]+\])*(?:\.[A-Za-z][A-Za-z0-9]*(?:\[[0-9]+\])*)*`)

// dependsOn reports whether a validation error is about a value that was
// set aside for having the wrong type (and was therefore validated as
// unset), or mentions one: it would only add noise.
func dependsOn(e *field.Error, removed map[string]bool) bool {
	if len(removed) == 0 {
		return false
	}
	under := func(path string) bool {
		for path != "" {
			if removed[path] {
				return true
			}
			i := strings.LastIndexAny(path, ".[")
			if i <= 0 {
				return false
			}
			path = path[:i]
		}
		return false
	}
	if under(e.Field) {
		return true
	}
	for _, p := range pathTokenRE.FindAllString(e.Detail, -1) {
		if under(p) {
			return true
		}
	}
	return false
}

// shortValue shows a value of the file in a message, briefly.
func shortValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "(none)"
	case string:
		return strconv.Quote(v)
	case json.Number, bool:
		return fmt.Sprint(v)
	}
	return describe(v)
}
