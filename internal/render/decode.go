package render

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// maxDocumentSize bounds one YAML or JSON document; a manifest larger than
// this is almost certainly not one, and decoding it would cost memory.
const maxDocumentSize = 8 << 20

// Decode reads a stream of YAML documents (or JSON objects) into objects.
// Empty documents are skipped, v1 Lists are expanded, and every object must
// have apiVersion, kind and metadata.name (or generateName). Errors name the
// document's position in the stream.
func Decode(data []byte) ([]*unstructured.Unstructured, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []*unstructured.Unstructured
	for doc := 1; ; doc++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if len(raw) > maxDocumentSize {
			return nil, fmt.Errorf("document %d: larger than %d bytes", doc, maxDocumentSize)
		}
		if len(bytes.TrimSpace(stripComments(raw))) == 0 {
			continue
		}
		obj := &unstructured.Unstructured{}
		if err := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096).Decode(&obj.Object); err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if obj.Object == nil {
			continue
		}
		if obj.IsList() {
			list, err := obj.ToList()
			if err != nil {
				return nil, fmt.Errorf("document %d: %w", doc, err)
			}
			for i := range list.Items {
				item := list.Items[i]
				if err := checkObject(&item); err != nil {
					return nil, fmt.Errorf("document %d, item %d: %w", doc, i, err)
				}
				out = append(out, &item)
			}
			continue
		}
		if err := checkObject(obj); err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		out = append(out, obj)
	}
}

func checkObject(obj *unstructured.Unstructured) error {
	if obj.GetAPIVersion() == "" {
		return errors.New("apiVersion is missing")
	}
	if obj.GetKind() == "" {
		return errors.New("kind is missing")
	}
	if obj.GetName() == "" && obj.GetGenerateName() == "" {
		return fmt.Errorf("%s: metadata.name is missing", obj.GetKind())
	}
	return nil
}

// stripComments drops comment-only lines, so a document of comments counts
// as empty.
func stripComments(doc []byte) []byte {
	var out []byte
	for line := range bytes.Lines(doc) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] == '#' {
			continue
		}
		out = append(out, line...)
	}
	return out
}
