package credits

// UsageBatchRows is the most usage rows one write carries, for tests.
const UsageBatchRows = usageBatchRows
