package bucket

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"
)

// The crash test kills a process making a stream of changes to a Store
// with SIGKILL at random moments (mid-append, mid-fsync, mid-compaction),
// reopens the files and checks that every acknowledged change is there and
// nothing else but the one change in flight. `go test` runs a few rounds;
// STDLB_CRASH_ROUNDS=300 runs the long version. SIGKILL loses no page
// cache: this proves the order of writes and renames and the reading of a
// torn log, not what a power cut does to a disk that ignores fsync.

// crashOp is change i of the stream, the same in child and parent: puts,
// every tenth a delete, every 97th a whole new set.
func crashOp(i int) (key string, lim *Limits, bulk map[string]Limits) {
	if i%97 == 96 {
		bulk = map[string]Limits{}
		for j := range 20 {
			bulk[fmt.Sprint("k-", (i+j)%50)] = Limits{int64(j + 1), 1}
		}
		return "", nil, bulk
	}
	key = fmt.Sprint("k-", i*7%50)
	if i%10 == 9 {
		return key, nil, nil
	}
	return key, &Limits{int64(i%1000 + 1), 1}, nil
}

func applyOp(m map[string]Limits, i int) {
	key, lim, bulk := crashOp(i)
	switch {
	case bulk != nil:
		clear(m)
		for k, v := range bulk {
			m[k] = v
		}
	case lim != nil:
		m[key] = *lim
	default:
		delete(m, key)
	}
}

func TestStoreCrashChild(t *testing.T) {
	dir := os.Getenv("STDLB_CRASH_CHILD")
	if dir == "" {
		t.Skip("run by TestStore_CrashLosesNoAcknowledgedChange")
	}
	from, _ := strconv.Atoi(os.Getenv("STDLB_CRASH_FROM"))
	s, err := OpenStore(filepath.Join(dir, "clients.json"), newStoreLimiter())
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(3)
	}
	s.compactAfter, s.compactEvery = time.Millisecond, 8 // compactions all the time
	go s.Run(context.Background())
	out := bufio.NewWriter(os.Stdout)
	for i := from; ; i++ {
		key, lim, bulk := crashOp(i)
		switch {
		case bulk != nil:
			_, err = s.Replace(bulk)
		case lim != nil:
			_, err = s.Put(key, *lim)
		default:
			_, _, err = s.Delete(key)
		}
		if err != nil {
			fmt.Fprintln(out, "error:", err)
			out.Flush()
			os.Exit(3)
		}
		fmt.Fprintln(out, "ack", i)
		out.Flush()
	}
}

func TestStore_CrashLosesNoAcknowledgedChange(t *testing.T) {
	rounds := 4
	if n, err := strconv.Atoi(os.Getenv("STDLB_CRASH_ROUNDS")); err == nil {
		rounds = n
	}
	dir := t.TempDir()
	model := map[string]Limits{}
	next, kills := 0, 0
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^TestStoreCrashChild$")
		cmd.Env = append(os.Environ(), "STDLB_CRASH_CHILD="+dir, "STDLB_CRASH_FROM="+strconv.Itoa(next))
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(stdout)
		killAfter := rng.IntN(40)
		acked := next - 1
		for lines.Scan() {
			var i int
			if _, err := fmt.Sscanf(lines.Text(), "ack %d", &i); err != nil {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("round %d: child said %q", round, lines.Text())
			}
			acked = i
			if killAfter--; killAfter < 0 {
				break
			}
		}
		cmd.Process.Kill() // SIGKILL, in the middle of a change or of a compaction
		for lines.Scan() { // acknowledgements written before the kill, still in the pipe
			fmt.Sscanf(lines.Text(), "ack %d", &acked)
		}
		cmd.Wait()
		kills++
		for i := next; i <= acked; i++ {
			applyOp(model, i)
		}
		got := reopen(t, filepath.Join(dir, "clients.json")).All()
		if reflect.DeepEqual(got, model) {
			next = acked + 1
			continue
		}
		applyOp(model, acked+1) // the change in flight may have made it
		if !reflect.DeepEqual(got, model) {
			t.Fatalf("round %d, killed after change %d was acknowledged: the store holds\n%v\nwant\n%v", round, acked, got, model)
		}
		next = acked + 2
	}
	t.Logf("%d kills, %d changes acknowledged and found after them", kills, next)
}
