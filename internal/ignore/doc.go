// Package ignore applies an application's spec.ignoreDifferences as Argo
// CD does: JSON pointers, jq path expressions and managed-fields managers
// name parts of an object that a comparison leaves out and, with
// RespectIgnoreDifferences=true, that a sync leaves as they are live.
package ignore
