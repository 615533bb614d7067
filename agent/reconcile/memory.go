package reconcile

import (
	"runtime/debug"
	"time"
)

// releaseAfter is how long after the last sync (or look at an
// application's health) the agent returns its freed heap to the operating
// system.
const releaseAfter = 5 * time.Second

// releaseMemory returns the heap a burst of syncs freed to the operating
// system once the burst is over. A sync of a big application reads and
// decodes whole lists of objects; the Go runtime keeps the freed pages
// for reuse and gives them back only slowly, so an idle agent would keep
// the resident size of its largest sync.
func (s *Syncer) releaseMemory() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.release == nil {
		s.release = time.AfterFunc(releaseAfter, debug.FreeOSMemory)
		return
	}
	s.release.Reset(releaseAfter)
}
