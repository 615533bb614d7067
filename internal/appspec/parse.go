package appspec

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// IsArgoKind reports whether an object of apiVersion and kind is one the hub
// interprets (Application, ApplicationSet, AppProject) rather than one an
// agent applies.
func IsArgoKind(apiVersion, kind string) bool {
	group, _, _ := strings.Cut(apiVersion, "/")
	return group == Group && (kind == KindApplication || kind == KindApplicationSet || kind == KindAppProject)
}

// DecodeApplication reads an Application from an object's JSON form (as
// rendered from file) and validates it, its waves annotation included.
func DecodeApplication(file string, object []byte) (*Application, error) {
	var app Application
	if err := strictDecode(object, &app); err != nil {
		return nil, &Error{File: file, Kind: KindApplication, Name: nameOf(object), Reason: err.Error()}
	}
	if err := app.Validate(); err != nil {
		return nil, withFile(err, file)
	}
	waves, err := annotatedWaves(KindApplication, app.Metadata)
	if err != nil {
		return nil, withFile(err, file)
	}
	app.Waves = waves
	app.Warnings = fieldWarnings(unusedFields(object, applicationFields))
	return &app, nil
}

// DecodeApplicationSet reads an ApplicationSet from an object's JSON form and
// validates its generators, strategy and waves annotation.
func DecodeApplicationSet(file string, object []byte) (*ApplicationSet, error) {
	var set ApplicationSet
	if err := strictDecode(object, &set); err != nil {
		return nil, &Error{File: file, Kind: KindApplicationSet, Name: nameOf(object), Reason: err.Error()}
	}
	if err := set.Validate(); err != nil {
		return nil, withFile(err, file)
	}
	waves, err := set.decodeWaves()
	if err != nil {
		return nil, withFile(err, file)
	}
	set.Waves = waves
	set.Warnings = fieldWarnings(unusedFields(object, applicationSetFields))
	for i, w := range set.Warnings {
		set.Warnings[i] = "ApplicationSet " + set.Metadata.Name + ": " + w
	}
	return &set, nil
}

// strictDecode decodes JSON, ignoring fields Flotilla does not read (Argo CD
// manifests carry many) but failing on wrong types.
func strictDecode(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return fmt.Errorf("%s: cannot be %s (want %s)", typeErr.Field, typeErr.Value, typeErr.Type)
		}
		return err
	}
	return nil
}

func nameOf(object []byte) string {
	var meta struct {
		Metadata ObjectMeta `json:"metadata"`
	}
	_ = json.Unmarshal(object, &meta)
	return meta.Metadata.Name
}

func withFile(err error, file string) error {
	var e *Error
	if errors.As(err, &e) && e.File == "" {
		e.File = file
	}
	return err
}
