// Package health computes the health of applied objects with kstatus and
// maps it to Argo CD's health states; an application's health is the worst
// of its objects.
package health
