package main

import "errors"

func benchShadows(benchModel) error { return nil }
func benchStore() error             { return nil }
func benchReport() error            { return nil }
func benchSoak(benchModel) error    { return errors.New("soak not written yet") }
