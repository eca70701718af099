// Package redistest starts real redis-server processes for tests: a single
// server on a free loopback port, which tests can kill, restart and pause to
// simulate faults, and a Redis Cluster of several masters.
//
// Servers run without persistence (--save "" --appendonly no) in a short
// temporary directory that also holds their log; they never touch the
// system Redis on 6379. Every process a test starts must be stopped with
// Close, typically through t.Cleanup ([StartT] does it).
package redistest
