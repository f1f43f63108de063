// The Go peer of bench/xchan_bench.sh: a channel of int64 with CAPACITY
// slots between two goroutines, each locked to its own OS thread, run with
// GOMAXPROCS=2; prints the line bench/xchan_bench.c prints.
//
//	xchan_go CAPACITY N
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)*1e-6
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: xchan_go CAPACITY N")
		os.Exit(2)
	}
	capacity, _ := strconv.Atoi(os.Args[1])
	n, _ := strconv.ParseInt(os.Args[2], 10, 64)
	ch := make(chan int64, capacity)
	done := make(chan bool)
	t0, c0 := time.Now(), cpuSeconds()
	go func() {
		runtime.LockOSThread()
		var expect int64
		for v := range ch {
			if v != expect {
				fmt.Fprintln(os.Stderr, "go: wrong element")
				os.Exit(1)
			}
			expect++
		}
		done <- expect == n
	}()
	go func() {
		runtime.LockOSThread()
		for i := int64(0); i < n; i++ {
			ch <- i
		}
		close(ch)
	}()
	if !<-done {
		fmt.Fprintln(os.Stderr, "go: wrong count")
		os.Exit(1)
	}
	secs := time.Since(t0).Seconds()
	fmt.Printf("go %d %d %.3f %.0f %.3f\n", capacity, n, secs, float64(n)/secs, cpuSeconds()-c0)
}
