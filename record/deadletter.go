package record

// Stages of a dead-letter record: the values of [HeaderDeadLetterStage].
const (
	// StageDecode: the row could not be made into a record (NULL channel, headers not a JSON
	// object, a column that no longer exists...). capture finds it; the record goes to the
	// dead-letter topic in commit order with the stream's other records.
	StageDecode = "decode"
	// StageKafka: Kafka refused the record for good (too large, invalid), or its topic cannot be
	// used. The sink sends a copy to the dead-letter topic when the refusal comes, not in commit
	// order with the rest.
	StageKafka = "kafka"
)

// DeadLetter returns the headers of the dead-letter record of a record with headers hs: hs,
// then [HeaderError] (reason), [HeaderOriginalTopic] (originalTopic) and
// [HeaderDeadLetterStage] (stage). It never modifies hs's backing array.
func DeadLetter(hs []Header, stage, reason, originalTopic string) []Header {
	return append(hs[:len(hs):len(hs)],
		Header{Key: HeaderError, Value: []byte(reason)},
		Header{Key: HeaderOriginalTopic, Value: []byte(originalTopic)},
		Header{Key: HeaderDeadLetterStage, Value: []byte(stage)})
}

// DeadLetterStage returns the stage of a dead-letter record, and false if hs is not one.
// A dead-letter record written before the stage header existed was always a sink's copy
// (capture's had no original topic): it reads as [StageKafka].
func DeadLetterStage(hs []Header) (string, bool) {
	if stage, ok := Lookup(hs, HeaderDeadLetterStage); ok {
		return stage, true
	}
	if Has(hs, HeaderOriginalTopic) {
		return StageKafka, true
	}
	return "", false
}

// IsOutOfOrder reports whether a record with headers hs stands outside the commit order of its
// partition: a copy the sink sent to the dead-letter topic when Kafka refused it. Such a
// record proves nothing about how far the partition got, and is never skipped as already sent.
func IsOutOfOrder(hs []Header) bool {
	stage, ok := DeadLetterStage(hs)
	return ok && stage != StageDecode
}
