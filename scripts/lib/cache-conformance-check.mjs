// Checks cache-tests results against the targets of scripts/cache-conformance.sh, scored the
// way the suite does (determineTestResult, dependencies honoured):
//   node cache-conformance-check.mjs SUITE_DIR ALLOWED_FILE MIN_PASS MAX_DEP_FAIL results.json...
// Fails (exit 1) when a required test fails that ALLOWED_FILE does not list (one test id per
// line, `#` comments), or when the pass count is below MIN_PASS or the tests skipped because a
// dependency failed are more than MAX_DEP_FAIL.
import fs from 'fs'
import path from 'path'

const [suiteDir, allowedFile, minPass, maxDepFail, ...files] = process.argv.slice(2)
const { default: tests } = await import(path.resolve(suiteDir, 'tests/index.mjs'))
const { determineTestResult, resultTypes } = await import(path.resolve(suiteDir, 'test-engine/lib/results.mjs'))
const names = Object.fromEntries(Object.entries(resultTypes).map(([k, v]) => [v[2], k]))
const allowed = new Set(fs.readFileSync(allowedFile, 'utf8').split('\n')
  .map(l => l.replace(/#.*/, '').trim()).filter(l => l !== ''))

let ok = true
for (const file of files) {
  const results = JSON.parse(fs.readFileSync(file, 'utf8'))
  let pass = 0; let depFail = 0
  const failing = []
  for (const suite of tests) {
    for (const test of suite.tests) {
      if (test.browser_only === true) continue
      const r = names[determineTestResult(tests, test.id, results, true)[2]]
      if (r === 'pass') pass++
      if (r === 'dependency_fail') depFail++
      if ((test.kind || 'required') === 'required' && r === 'fail') failing.push(test.id)
    }
  }
  const unexpected = failing.filter(id => !allowed.has(id))
  const name = path.basename(file)
  console.log(`${name}: pass ${pass}, required failures ${failing.length} (${failing.join(', ') || 'none'}), skipped for a failed dependency ${depFail}`)
  if (unexpected.length > 0) { ok = false; console.log(`${name}: required failures not listed as harness artifacts: ${unexpected.join(', ')}`) }
  if (pass < Number(minPass)) { ok = false; console.log(`${name}: pass ${pass} < ${minPass}`) }
  if (depFail > Number(maxDepFail)) { ok = false; console.log(`${name}: ${depFail} skipped for a failed dependency > ${maxDepFail}`) }
}
process.exit(ok ? 0 : 1)
