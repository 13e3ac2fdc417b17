// Package bench measures the hub without sockets, each benchmark beside the
// naive single-lock hub (internal/fake.NaiveHub), the way the original
// package is usually implemented, as the baseline; and the Redis fan-out
// against a real redis-server. Run it with `make bench`, which prints a table
// of medians and ratios. It has no API: everything is in its _test files.
package bench
