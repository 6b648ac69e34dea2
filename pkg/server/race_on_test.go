//go:build race

package server

// raceEnabled: the race detector instruments the build, which changes frame
// sizes.
const raceEnabled = true
