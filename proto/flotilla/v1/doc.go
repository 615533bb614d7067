// Package flotillav1 holds the generated Go code of Flotilla's wire protocol
// (proto/flotilla/v1). Every message carries a schema_version; readers ignore
// fields they do not know, so newer writers never break older readers.
package flotillav1
