// Package discovery finds the applications a hub publishes: it renders each
// root path like any application, reads the Argo CD Applications and
// ApplicationSets it yields (recursing into app-of-apps, with cycle
// detection), renders every application to validate it and to learn which
// files it needs, and resolves the clusters each one targets.
package discovery
