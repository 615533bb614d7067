package signing

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// fuzzKey is a fixed key, so that the envelopes of the seed corpus stay
// signed by it from one run to the next.
func fuzzKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("flotilla fuzz key " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

// fuzzEnvelopes are envelopes as the hub writes them: desired states
// (one of them a removal) and commands, signed by the hub's key.
func fuzzEnvelopes(tb testing.TB, signer *Signer) ([]*flotillav1.SignedDesiredState, []*flotillav1.SignedAgentCommand) {
	tb.Helper()
	var states []*flotillav1.SignedDesiredState
	for _, ds := range []*flotillav1.DesiredState{
		{SchemaVersion: 1, Cluster: "prod-eu", App: "api-service", HistoryId: 7,
			Source:   &flotillav1.Source{RepoUrl: "https://git.example.com/r", Path: "apps/api", Commit: "aaaaaaaabbbbbbbb"},
			Artifact: &flotillav1.Artifact{Digest: "sha256:ab", Size: 10}, Initiator: flotillav1.Initiator_INITIATOR_GIT},
		{SchemaVersion: 1, Cluster: "prod-eu", App: "old-service", HistoryId: 3, Deletion: &flotillav1.Deletion{Cascade: true}},
		{},
	} {
		env, err := signer.Sign(ds)
		if err != nil {
			tb.Fatal(err)
		}
		states = append(states, env)
	}
	var commands []*flotillav1.SignedAgentCommand
	for _, cmd := range []*flotillav1.AgentCommand{
		{SchemaVersion: 1, Cluster: "prod-eu", App: "api-service", Actor: "otto", IssuedAt: timestamppb.New(time.Date(2026, time.March, 14, 9, 0, 0, 0, time.UTC)),
			Command: &flotillav1.AgentCommand_Sync{Sync: &flotillav1.SyncCommand{}}},
		{SchemaVersion: 1, Cluster: "prod-eu", App: "api-service", Actor: "otto",
			Command: &flotillav1.AgentCommand_Rollout{Rollout: &flotillav1.RolloutCommand{Action: flotillav1.RolloutAction_ROLLOUT_ACTION_PROMOTE, Full: true}}},
	} {
		env, err := signer.SignCommand(cmd)
		if err != nil {
			tb.Fatal(err)
		}
		commands = append(commands, env)
	}
	return states, commands
}

// FuzzVerify reads arbitrary bytes as the envelopes agents (and the hub)
// receive from the bus and verifies them: Verify, VerifyCommand and
// VerifyFleetRollout never panic, and what they accept is exactly a
// payload the hub signed as that message type, decoded: a command's
// payload never passes as a desired state.
func FuzzVerify(f *testing.F) {
	signer := NewSigner(fuzzKey("hub"))
	rotated := NewSigner(fuzzKey("next"))
	rogue := NewSigner(fuzzKey("rogue"))
	verifier := NewVerifier(signer.PublicKey(), rotated.PublicKey())

	// payloads the pinned keys signed, as desired states and as commands
	signedStates, signedCommands := map[string]bool{}, map[string]bool{}
	add := func(env proto.Message, signed map[string]bool, payload []byte, trusted bool) {
		data, err := proto.Marshal(env)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		if trusted {
			signed[string(payload)] = true
		}
	}
	for _, s := range []*Signer{signer, rotated, rogue} {
		states, commands := fuzzEnvelopes(f, s)
		for _, env := range states {
			add(env, signedStates, env.GetDesiredState(), s != rogue)
		}
		for _, env := range commands {
			add(env, signedCommands, env.GetCommand(), s != rogue)
			// A command's envelope as a desired state's: same field
			// numbers, so it decodes; it must not verify.
			add(&flotillav1.SignedDesiredState{SchemaVersion: env.GetSchemaVersion(), DesiredState: env.GetCommand(), Signature: env.GetSignature()}, nil, nil, false)
		}
	}
	// Fleet rollout records, which only the hub reads back.
	signedRollouts := map[string]bool{}
	for _, s := range []*Signer{signer, rogue} {
		env, err := s.SignFleetRollout(&flotillav1.FleetRollout{SchemaVersion: 1, Id: "ApplicationSet/web@0a1b2c", Kind: "ApplicationSet", Name: "web", Current: 1})
		if err != nil {
			f.Fatal(err)
		}
		add(env, signedRollouts, env.GetRollout(), s != rogue)
	}
	f.Add([]byte{})
	f.Add([]byte("\x1a\x09\x0a\x07ed25519")) // a signature with only its algorithm

	f.Fuzz(func(t *testing.T, data []byte) {
		var env flotillav1.SignedDesiredState
		if proto.Unmarshal(data, &env) == nil {
			ds, err := verifier.Verify(&env)
			checkVerified(t, signedStates, env.GetDesiredState(), ds, err, &flotillav1.DesiredState{})
		}
		var cmdEnv flotillav1.SignedAgentCommand
		if proto.Unmarshal(data, &cmdEnv) == nil {
			cmd, err := verifier.VerifyCommand(&cmdEnv)
			checkVerified(t, signedCommands, cmdEnv.GetCommand(), cmd, err, &flotillav1.AgentCommand{})
		}
		var rolloutEnv flotillav1.SignedFleetRollout
		if proto.Unmarshal(data, &rolloutEnv) == nil {
			r, err := verifier.VerifyFleetRollout(&rolloutEnv)
			checkVerified(t, signedRollouts, rolloutEnv.GetRollout(), r, err, &flotillav1.FleetRollout{})
		}
	})
}

// checkVerified fails unless got (with err) is the verdict on payload:
// refused, or accepted because a pinned key signed exactly payload and then
// its decoding.
func checkVerified[M proto.Message](t *testing.T, signed map[string]bool, payload []byte, got M, err error, want M) {
	t.Helper()
	if err != nil {
		return
	}
	if !signed[string(payload)] {
		t.Fatalf("accepted a payload no pinned key signed: %x", payload)
	}
	if uerr := proto.Unmarshal(payload, want); uerr != nil {
		t.Fatalf("accepted a payload that does not decode (%v): %x", uerr, payload)
	}
	if !proto.Equal(want, got) {
		t.Fatalf("accepted %v, the payload says %v", got, want)
	}
}

// FuzzVerifyMutated changes one part of an envelope the hub signed: a byte
// of the payload or of the signature, the key id, the algorithm or the
// schema version, or it cuts or extends the payload or the signature. Whatever changed what the
// signature covers or how it is checked, the envelope is refused; an
// envelope left as it was verifies.
func FuzzVerifyMutated(f *testing.F) {
	const parts = 9
	signer := NewSigner(fuzzKey("hub"))
	other := NewSigner(fuzzKey("next"))
	verifier := NewVerifier(signer.PublicKey(), other.PublicKey())
	states, commands := fuzzEnvelopes(f, signer)
	for part := range byte(parts) {
		f.Add(uint8(0), part, uint16(0), byte(1), []byte(nil))
		f.Add(uint8(3), part, uint16(17), byte(0x80), []byte("x"))
	}
	f.Add(uint8(1), byte(0), uint16(0), byte(0), []byte(nil)) // unchanged

	f.Fuzz(func(t *testing.T, which uint8, part byte, at uint16, xor byte, extra []byte) {
		n := len(states) + len(commands)
		var payload []byte
		var sig *flotillav1.Signature
		var version uint32
		i := int(which) % n
		if i < len(states) {
			env := proto.Clone(states[i]).(*flotillav1.SignedDesiredState)
			payload, sig, version = env.GetDesiredState(), env.GetSignature(), env.GetSchemaVersion()
		} else {
			env := proto.Clone(commands[i-len(states)]).(*flotillav1.SignedAgentCommand)
			payload, sig, version = env.GetCommand(), env.GetSignature(), env.GetSchemaVersion()
		}
		origPayload, origSig, origVersion := bytes.Clone(payload), proto.Clone(sig).(*flotillav1.Signature), version

		flip := func(b []byte) {
			if len(b) > 0 {
				b[int(at)%len(b)] ^= xor
			}
		}
		switch part % parts {
		case 0:
			flip(payload)
		case 1:
			flip(sig.Value)
		case 2:
			payload = append(payload, extra...)
		case 3:
			payload = payload[:int(at)%(len(payload)+1)]
		case 4:
			sig.Value = append(sig.Value, extra...)
		case 5:
			sig.Value = sig.Value[:int(at)%(len(sig.Value)+1)]
		case 6:
			if xor%2 == 0 {
				sig.KeyId = KeyID(other.PublicKey()) // pinned, but it did not sign
			} else {
				sig.KeyId = string(extra)
			}
		case 7:
			sig.Algorithm = string(extra)
		case 8:
			version ^= uint32(xor) | uint32(at)<<8
		}
		changed := !bytes.Equal(payload, origPayload) || !proto.Equal(sig, origSig) || version != origVersion

		var err error
		if i < len(states) {
			_, err = verifier.Verify(&flotillav1.SignedDesiredState{SchemaVersion: version, DesiredState: payload, Signature: sig})
		} else {
			_, err = verifier.VerifyCommand(&flotillav1.SignedAgentCommand{SchemaVersion: version, Command: payload, Signature: sig})
		}
		switch {
		case changed && err == nil:
			t.Fatalf("accepted a mutated envelope: payload %x (signed %x), signature %v (signed %v)", payload, origPayload, sig, origSig)
		case changed && !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrUnknownKey):
			t.Fatalf("refused a mutated envelope with %v, want ErrBadSignature or ErrUnknownKey", err)
		case !changed && err != nil:
			t.Fatalf("refused the envelope as signed: %v", err)
		}
	})
}

// FuzzParsePublicKeys reads arbitrary bytes as a key set file (an agent's
// --hub-public-key, the hub's trusted-keys.pem): it never panics, what it
// accepts are ed25519 keys, and a file it accepts is accepted again after
// its keys are encoded anew.
func FuzzParsePublicKeys(f *testing.F) {
	for _, name := range []string{"hub", "next"} {
		pub, _ := EncodePublicKey(fuzzKey(name).Public().(ed25519.PublicKey))
		f.Add(pub)
		f.Add(append([]byte("# comment\n"), append(pub, pub...)...))
		f.Add(pub[:len(pub)-10])
	}
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\n-----BEGIN PUBLIC KEY-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := ParsePublicKeys(data)
		if err != nil {
			return
		}
		var again []byte
		for _, k := range keys {
			if len(k) != ed25519.PublicKeySize {
				t.Fatalf("accepted a key of %d bytes", len(k))
			}
			block, err := EncodePublicKey(k)
			if err != nil {
				t.Fatal(err)
			}
			again = append(again, block...)
		}
		reparsed, err := ParsePublicKeys(again)
		if err != nil || len(reparsed) != len(keys) {
			t.Fatalf("the accepted keys, encoded again: %d keys, %v; want %d", len(reparsed), err, len(keys))
		}
	})
}
