# The client matrix's Ruby client, dalli (Debian's ruby-dalli 3.0, binary protocol): the checks of README.md.
# Usage: ruby matrix.rb PORT   Prints `ok NAME` / `FAIL NAME: why` per check; exits 1 when any failed.
require 'dalli'

mc = Dalli::Client.new("127.0.0.1:#{ARGV[0]}", socket_timeout: 5, socket_failure_delay: false)
$failed = []

def check(name)
  yield
  puts "ok #{name}"
rescue StandardError => e
  $failed << name
  puts "FAIL #{name}: #{e.class}: #{e.message}"
end

def eq(got, want, what)
  raise "#{what}: got #{got.inspect}, want #{want.inspect}" unless got == want
end

mc.flush
check('set_get') do
  mc.set('mx:k', 'hello')
  eq(mc.get('mx:k'), 'hello', 'get')
end
check('get_multi') do
  keys = (0...40).map { |i| "mx:m#{i}" }
  keys.each { |k| mc.set(k, "v#{k}") }
  eq(mc.get_multi(keys), keys.to_h { |k| [k, "v#{k}"] }, 'get_multi')
end
check('cas_unique_across_keys') do
  mc.set('mx:a', '1')
  mc.set('mx:b', '1')
  ua = mc.get_cas('mx:a')[1]
  ub = mc.get_cas('mx:b')[1]
  raise "the two keys share the CAS unique #{ua}" if ua == ub
end
check('cas_round_trip') do
  mc.set('mx:c', 'old')
  u = mc.get_cas('mx:c')[1]
  eq(mc.set_cas('mx:c', 'new', u) != false, true, 'cas with the current unique')
  eq(mc.set_cas('mx:c', 'again', u), false, 'cas with a stale unique')
  eq(mc.get('mx:c'), 'new', 'value after cas')
end
check('counter') do
  # The binary Increment with an initial value (what failed through a proxy).
  eq(mc.incr('mx:n', 5, 0, 10), 10, 'incr of a missing key with an initial value')
  eq(mc.incr('mx:n', 5), 15, 'incr')
  eq(mc.decr('mx:n', 3), 12, 'decr')
end
check('add_delete') do
  mc.set('mx:d', 'x')
  eq(mc.add('mx:d', 'y'), false, 'add of an existing key')
  eq(mc.delete('mx:d') != false, true, 'delete')
  eq(mc.get('mx:d'), nil, 'get after delete')
  eq(mc.add('mx:d', 'z') != false, true, 'add after delete')
end
check('flush_all') do
  keys = (0...40).map { |i| "mx:f#{i}" }
  keys.each { |k| mc.set(k, 'x') }
  mc.flush
  eq(mc.get_multi(keys), {}, 'keys left after flush_all')
end
check('version') do
  v = mc.version.values.first
  raise "version #{v.inspect} does not start with a digit" unless v.to_s =~ /\A\d/
end
exit($failed.empty? ? 0 : 1)
