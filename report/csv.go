package report

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
)

// CSVHeader is the header line of WriteCSV, in column order.
var CSVHeader = []string{
	"config", "residual", "rank_ratio", "budget",
	"params", "macs", "file_bytes",
	"params_ratio", "macs_ratio", "file_ratio",
	"agreement", "cosine", "acc_before", "acc_after",
	"latency_ms", "latency_ratio", "layers", "model", "precision",
}

// WriteCSV writes one line per configuration under CSVHeader. Numbers are
// written so that they parse back to the same float64; missing values are
// empty cells; layers are written as "name:rank/C" joined by ";".
func WriteCSV(w io.Writer, s *Sweep) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return fmt.Errorf("write csv header: %w", err)
	}
	for _, r := range s.Rows {
		rec := []string{
			r.Config, r.Residual, exact(r.RankRatio), r.Budget,
			strconv.FormatInt(r.Params, 10),
			strconv.FormatInt(r.MACs, 10),
			strconv.FormatInt(r.FileBytes, 10),
			exact(r.ParamsRatio), exact(r.MACsRatio), exact(r.FileRatio),
			exactOpt(r.Agreement), exactOpt(r.Cosine),
			exactOpt(r.AccBefore), exactOpt(r.AccAfter),
			exactOpt(r.LatencyMs), exactOpt(r.LatencyRatio),
			layersText(r.Layers), r.Model, r.Precision,
		}
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("write csv row %s: %w", r.Config, err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	return nil
}
