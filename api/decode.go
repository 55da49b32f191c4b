package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"sort"
	"strings"
)

// maxBody bounds a request body.
const maxBody = 1 << 20

// decode reads exactly one JSON value into v, strictly: unknown fields,
// trailing data, wrong types and malformed JSON are 400s naming what they can.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	if err := jsonContentType(r); err != nil {
		return err
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return decodeError(err)
	}
	if err := checkNumbers(body, reflect.TypeOf(v)); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		e := decodeError(err)
		if ae, ok := e.(*Error); ok && (ae.Code == "invalid_value" || ae.Code == "unknown_field") {
			if f := badField(body, reflect.TypeOf(v), ""); f != "" {
				ae.Field = f
			}
		}
		return e
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &Error{Status: http.StatusBadRequest, Code: "malformed_json", Message: "the body must hold exactly one JSON value"}
	}
	return nil
}

// jsonContentType is the one rule of every route that reads a body: JSON,
// that is application/json, any application/...+json type, or no
// Content-Type at all (curl -d sends a form type, so examples set it).
func jsonContentType(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && (mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")) {
		return nil
	}
	if len(ct) > 100 {
		ct = ct[:100] + "…"
	}
	return &Error{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Message: "send JSON (Content-Type: application/json), got " + ct}
}

func decodeError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var big *http.MaxBytesError
	switch {
	case errors.As(err, &big):
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Message: fmt.Sprintf("the body exceeds %d bytes", maxBody)}
	case errors.Is(err, io.EOF):
		return &Error{Status: http.StatusBadRequest, Code: "malformed_json", Message: "the body is empty; send a JSON object"}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &Error{Status: http.StatusBadRequest, Code: "malformed_json", Message: "the JSON body ends early"}
	case errors.As(err, &syn):
		return &Error{Status: http.StatusBadRequest, Code: "malformed_json", Message: fmt.Sprintf("malformed JSON at byte %d: %v", syn.Offset, syn)}
	case errors.As(err, &typ):
		what := typ.Field
		if what == "" {
			what = "the request body" // the top level (an array for an object)
		}
		return &Error{Status: http.StatusBadRequest, Code: "invalid_type", Field: typ.Field, Message: fmt.Sprintf("%s must be a JSON %s", what, jsonKind(typ.Type.Kind().String()))}
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		f = strings.Trim(f, `"`)
		return &Error{Status: http.StatusBadRequest, Code: "unknown_field", Field: f, Message: fmt.Sprintf("unknown field %q", f)}
	}
	return &Error{Status: http.StatusBadRequest, Code: "invalid_value", Message: err.Error()}
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

func strictUnmarshal(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// badField finds the JSON path of the value that fails to decode into t. The
// decoder names neither the field of an error from a type's own UnmarshalJSON
// (amounts, decimals, times) nor the path of an unknown field, so this walks
// the body again, on the error path only.
func badField(raw []byte, t reflect.Type, path string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if strictUnmarshal(raw, reflect.New(t).Interface()) == nil {
		return ""
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return path
	}
	switch t.Kind() {
	case reflect.Struct:
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			return path
		}
		known := map[string]bool{}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			known[name] = true
			if sub, ok := obj[name]; ok {
				if p := badField(sub, f.Type, join(path, name)); p != "" {
					return p
				}
			}
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			if !known[k] {
				keys = append(keys, k)
			}
		}
		if len(keys) > 0 {
			sort.Strings(keys)
			return join(path, keys[0])
		}
	case reflect.Slice:
		var arr []json.RawMessage
		if json.Unmarshal(raw, &arr) != nil {
			return path
		}
		for i, el := range arr {
			if p := badField(el, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); p != "" {
				return p
			}
		}
	}
	return path
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "bool":
		return "boolean"
	case "slice", "array":
		return "array"
	case "struct", "map", "ptr":
		return "object"
	}
	return "number"
}
