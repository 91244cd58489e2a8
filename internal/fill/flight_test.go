package fill

import (
	"context"
	"testing"
)

// A call forgotten while it finishes is not joined: the next Do for its
// key runs anew, and the forgotten call's end does not remove the new one.
func TestGroupForget(t *testing.T) {
	var g Group[int]
	release := make(chan struct{})
	first := make(chan int, 1)
	started := make(chan struct{})
	go func() {
		v, _ := g.Do(context.Background(), "k", false, 0, func() (int, error) {
			close(started)
			<-release
			return 1, nil
		})
		first <- v
	}()
	<-started
	g.Forget("k")
	second, secondRuns := make(chan struct{}), make(chan struct{})
	go func() {
		g.Do(context.Background(), "k", false, 0, func() (int, error) { close(secondRuns); <-second; return 2, nil })
	}()
	<-secondRuns
	close(release)
	if v := <-first; v != 1 {
		t.Fatalf("forgotten call: got %d, want 1", v)
	}
	// The forgotten call's end left the new call in place: later callers
	// join it.
	g.mu.Lock()
	_, running := g.calls["k"]
	g.mu.Unlock()
	if !running {
		t.Error("the forgotten call's end removed the new call")
	}
	close(second)
}
