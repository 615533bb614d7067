package appspec

import (
	"fmt"
	"strings"
)

// Error is an invalid or unsupported field in a manifest. It names the file
// the object came from, the object and the field.
type Error struct {
	File   string
	Kind   string
	Name   string
	Field  string
	Reason string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if e.Kind != "" {
		fmt.Fprintf(&b, "%s %q: ", e.Kind, e.Name)
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}
