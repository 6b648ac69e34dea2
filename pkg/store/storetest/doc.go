// Package storetest is the conformance suite every store.Store backend must
// pass.
//
// A backend's tests call RunConformance with a constructor for fresh, empty
// stores; file-backed backends also call RunPersistence with a function that
// opens a store at a given path:
//
//	func TestConformance(t *testing.T) {
//		storetest.RunConformance(t, func(t *testing.T) store.Store { return memory.New() })
//	}
//
// The suite only uses made-up data, so printing it in a failure message
// exposes no real secret.
package storetest
