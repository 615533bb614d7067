// Package bench holds Flotilla's performance benchmarks, run by `make bench`
// against the same real parts as the end-to-end tests. Each prints figures
// benchstat can compare; docs/benchmarks.md records them with the machine
// they ran on. No benchmark asserts a target: targets are read, not tested.
package bench
