package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
)

// environment runs testenv's clusters, Prometheus and traffic outside a
// test (it is a testenv.TB): cleanups run last first when the demo ends,
// and Fatal ends the demo through them, with its message as the error.
type environment struct {
	ctx      context.Context
	dir      string
	log      *slog.Logger
	dirs     int
	cleanups []func()
	failed   bool
}

// fatal is the panic Fatal raises and recoverFatal turns into an error.
type fatal string

func (e *environment) Helper()                  {}
func (e *environment) Cleanup(f func())         { e.cleanups = append(e.cleanups, f) }
func (e *environment) Context() context.Context { return e.ctx }
func (e *environment) Failed() bool             { return e.failed }

func (e *environment) TempDir() string {
	e.dirs++
	dir := filepath.Join(e.dir, strconv.Itoa(e.dirs))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.Fatal(err)
	}
	return dir
}

func (e *environment) Logf(format string, args ...any) { e.log.Info(fmt.Sprintf(format, args...)) }

func (e *environment) Errorf(format string, args ...any) {
	e.failed = true
	e.log.Error(fmt.Sprintf(format, args...))
}

func (e *environment) Fatal(args ...any) {
	e.failed = true
	panic(fatal(fmt.Sprint(args...)))
}

func (e *environment) Fatalf(format string, args ...any) {
	e.failed = true
	panic(fatal(fmt.Sprintf(format, args...)))
}

// recoverFatal turns a Fatal into *err; deferred after stop, it runs first.
func (e *environment) recoverFatal(err *error) {
	r := recover()
	if r == nil {
		return
	}
	msg, ok := r.(fatal)
	if !ok {
		panic(r)
	}
	*err = fmt.Errorf("%s", msg)
}

// stop runs the cleanups, newest first. A cleanup that fails (Fatal, or
// any panic) is logged and the next one runs: one cluster that cannot be
// stopped must not leave the others running.
func (e *environment) stop() {
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.runCleanup(e.cleanups[i])
	}
}

func (e *environment) runCleanup(f func()) {
	defer func() {
		if r := recover(); r != nil {
			e.failed = true
			e.log.Error(fmt.Sprintf("cleanup failed: %v", r))
		}
	}()
	f()
}
