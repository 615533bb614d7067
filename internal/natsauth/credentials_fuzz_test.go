package natsauth

import "testing"

// FuzzCredentials: a credentials file comes from a mounted Secret or a
// path an operator gives; parsing it never panics.
func FuzzCredentials(f *testing.F) {
	a, err := LoadOrCreate(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	valid, _, err := a.User("prod-eu", ClusterPermissions("prod-eu"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add([]byte("-----BEGIN NATS USER JWT-----\nnot a jwt\n------END NATS USER JWT------\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, creds []byte) {
		_, _ = Credentials(creds)
		_, _ = ClusterOptions("prod-eu", creds)
	})
}
