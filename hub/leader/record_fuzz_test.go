package leader

import "testing"

// FuzzParseRecord: any bytes in the lease (only hub replicas can write it)
// are read without a panic, and a record taken names its holder.
func FuzzParseRecord(f *testing.F) {
	f.Add([]byte(`{"holder":"hub-0","apiURL":"https://hub-0:8080","instance":"abc"}`))
	f.Add([]byte(`{"holder":""}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if r, err := parseRecord(data); err == nil && r.Holder == "" {
			t.Fatal("took a record without a holder")
		}
	})
}
