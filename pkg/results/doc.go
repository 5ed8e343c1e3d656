// Package results writes a step's results: one file per result in --results-dir
// (read by Argo output parameters and Tekton results) and one JSON summary line.
package results
