package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"strings"
)

// maxNumberChars caps every number of a request before it is parsed: exact
// decimal parsing costs time quadratic in the digits (1 MB took seconds of
// CPU), and no amount or price needs more than a few dozen characters.
const maxNumberChars = 40

// numberChar is what a JSON number or a decimal string is made of.
func numberChar(c byte) bool {
	return c >= '0' && c <= '9' || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'
}

// checkNumbers refuses a body holding a number longer than maxNumberChars,
// whether a JSON number or a string that a number type of t would parse,
// naming its field and never echoing it. A body without so long a run of
// number characters (every honest one) is passed by one byte scan.
func checkNumbers(body []byte, t reflect.Type) error {
	run := 0
	long := false
	for _, c := range body {
		if !numberChar(c) {
			run = 0
			continue
		}
		if run++; run > maxNumberChars {
			long = true
			break
		}
	}
	if !long {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var stack []frame
	path := func() string {
		var b strings.Builder
		for _, f := range stack {
			if f.obj {
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(f.key)
			} else {
				b.WriteString("[" + strconv.Itoa(f.idx) + "]")
			}
		}
		return b.String()
	}
	done := func() { // a value of the top container ended
		if n := len(stack); n > 0 {
			if stack[n-1].obj {
				stack[n-1].wantKey = true
			} else {
				stack[n-1].idx++
			}
		}
	}
	tooLong := func() error {
		p := path()
		return &Error{Status: http.StatusBadRequest, Code: "too_long", Field: p,
			Message: fmt.Sprintf("%s: numbers are limited to %d characters", p, maxNumberChars)}
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // malformed JSON: the decoder reports it
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, frame{obj: true, wantKey: true})
			case '[':
				stack = append(stack, frame{})
			default:
				stack = stack[:len(stack)-1]
				done()
			}
		case json.Number:
			if len(v) > maxNumberChars {
				return tooLong()
			}
			done()
		case string:
			if n := len(stack); n > 0 && stack[n-1].obj && stack[n-1].wantKey {
				stack[n-1].key, stack[n-1].wantKey = v, false
				continue
			}
			if len(v) > maxNumberChars && numeric(v) && parsesString(t, stack) {
				return tooLong()
			}
			done()
		default:
			done()
		}
	}
}

// frame is an open object or array of the body, for the path of a value.
type frame struct {
	obj     bool
	key     string
	idx     int
	wantKey bool
}

func numeric(s string) bool {
	for i := 0; i < len(s); i++ {
		if !numberChar(s[i]) {
			return false
		}
	}
	return true
}

// parsesString reports whether the Go type at the path decodes a JSON string
// as something other than plain text (an amount, a decimal): only those
// parse it as a number. Unknown paths count as parsing (they fail anyway).
func parsesString(t reflect.Type, stack []frame) bool {
	for _, f := range stack {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch t.Kind() {
		case reflect.Struct:
			found := false
			for i := 0; i < t.NumField(); i++ {
				name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
				if name == f.key {
					t, found = t.Field(i).Type, true
					break
				}
			}
			if !found {
				return true
			}
		case reflect.Slice, reflect.Array, reflect.Map:
			t = t.Elem()
		default:
			return t.Kind() != reflect.Interface
		}
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return true
	}
	return t.Kind() != reflect.String && t.Kind() != reflect.Interface
}

// clipNumbers replaces every run of number characters longer than
// maxNumberChars in an error message, so no error echoes a huge value.
func clipNumbers(msg string) string {
	var b strings.Builder
	run := 0
	for i := 0; i <= len(msg); i++ {
		if i < len(msg) && numberChar(msg[i]) {
			run++
			continue
		}
		if run > maxNumberChars {
			b.WriteString(fmt.Sprintf("(a number of %d characters)", run))
		} else {
			b.WriteString(msg[i-run : i])
		}
		run = 0
		if i < len(msg) {
			b.WriteByte(msg[i])
		}
	}
	return b.String()
}
