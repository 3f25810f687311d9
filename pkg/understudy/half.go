package understudy

import "github.com/x448/float16"

// HalfToFloat32 widens IEEE half-precision bits to a float32.
func HalfToFloat32(bits uint16) float32 { return float16.Frombits(bits).Float32() }

// Float32ToHalf rounds a float32 to the nearest half-precision value and
// returns its bits.
func Float32ToHalf(f float32) uint16 { return float16.Fromfloat32(f).Bits() }
