package auth

// Remembered is how many verified tokens v remembers.
func Remembered(v *Verifier) int { return v.verified.size() }

// MaxRemembered is the bound on Remembered.
const MaxRemembered = maxVerified
