import Jinja
import Testing

/// The language itself, on small templates whose output Python's jinja2 gives as written here.
@Suite struct JinjaLanguageTests {
    func render(_ source: String, _ variables: [String: JinjaValue] = [:]) throws -> String {
        try Template(source).render(variables)
    }

    @Test func expressionsFollowPythonSemantics() throws {
        #expect(try render("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 7 / 2 }}") == "3 -4 1 2 1024 3.5")
        #expect(try render("{{ 'a' ~ 1 ~ none }} {{ [1, 2] + [3] }} {{ 'ab' * 2 }}") == "a1None [1, 2, 3] abab")
        #expect(try render("{{ {'a': 'x', 'b': [true, none]} }}") == "{'a': 'x', 'b': [True, None]}")
        #expect(try render("{{ 1 if x else 2 }}{{ 'y' if not x }}", ["x": false]) == "2y")
        #expect(try render("{{ 'b' in 'abc' }} {{ 3 not in [1, 2] }} {{ 'k' in {'k': 1} }}") == "True True True")
        #expect(try render("{{ 1 < 2 < 3 }}") == "True")
    }

    @Test func slicesAndIndices() throws {
        #expect(try render("{{ x[1:] }} {{ x[:-1] }} {{ x[::-1] }} {{ x[-1] }} {{ 'hello'[1:3] }}", ["x": [1, 2, 3]]) == "[2, 3] [1, 2] [3, 2, 1] 3 el")
        #expect(try render("{{ x[5] is defined }}", ["x": [1]]) == "False")
    }

    @Test func whitespaceControlAsHuggingFaceRendersIt() throws {
        // trim_blocks drops the newline after a block tag; lstrip_blocks the indentation before one.
        #expect(try render("{% if true %}\n    yes\n    {% endif %}\nend") == "    yes\nend")
        #expect(try render("a  {{- ' b ' -}}  c") == "a b c")
        #expect(try render("a\n  {%- if true %}x{% endif -%}\n  b") == "axb")
        #expect(try render("a {%+ if true %}x{% endif +%}\nb") == "a x\nb")
        #expect(try render("{# note #}\nx") == "x")
    }

    @Test func loopsScopesAndNamespaces() throws {
        let t = """
            {%- set ns = namespace(count=0) -%}
            {%- set outer = 'kept' -%}
            {%- for m in xs if m != 2 -%}
            {%- set outer = 'inner' -%}
            {%- set ns.count = ns.count + m -%}
            {{ loop.index }}/{{ loop.length }}{{ ',' if not loop.last }}
            {%- endfor -%}
            ;{{ ns.count }};{{ outer }}
            """
        #expect(try render(t, ["xs": [1, 2, 3, 4]]) == "1/3,2/3,3/3;8;kept")
        #expect(try render("{% for x in [] %}a{% else %}empty{% endfor %}") == "empty")
        #expect(try render("{% for x in [1,2,3,4] %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}") == "13")
        #expect(try render("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", ["d": ["b": 1, "a": 2]]) == "b=1;a=2;")
    }

    /// Python's `Markup`: a plain string added to a safe one is escaped first (either side); `~`,
    /// filters and comparisons read it plain. Expected strings are jinja2 3.1.6's renderings.
    @Test func safeStringsEscapeWhatIsAddedToThem() throws {
        #expect(try render("{{ 'a<b'|safe + '<c>' }}|{{ '<x>' + 'y&'|safe }}|{{ ('<'|e) + '>' }}|{{ '<'|e|e }}|{{ '<'|forceescape|forceescape }}|{{ ('<'|safe) ~ '>' }}|{{ ('q'|safe) == 'q' }}|{{ ('<'|safe)|length }}")
                == "a<b&lt;c&gt;|&lt;x&gt;y&|&lt;&gt;|&lt;|&amp;lt;|<>|True|1")
    }

    /// map, select and friends return generators: they loop and feed list, join and first, but
    /// are always true and have no length, last item or JSON form (jinja2 raises TypeError).
    @Test func sequenceFiltersReturnGenerators() throws {
        #expect(try render("{{ [1, 2]|map('string')|join(',') }}|{{ 'yes' if [] | select else 'no' }}|{{ [3, 1]|reverse|list }}|{{ [1,2]|select|first }}")
                == "1,2|yes|[1, 3]|1")
        for source in ["{{ [1]|map('string')|tojson }}", "{{ [1]|select|length }}", "{{ [1]|select|last }}"] {
            #expect(throws: JinjaError.self, "\(source)") { try render(source) }
        }
    }

    /// A namespace is one object: changed inside a macro (as the global it is, or passed in) or
    /// through another name, every holder sees the change, as in Jinja.
    @Test func namespacesAreShared() throws {
        #expect(try render("{% set ns = namespace(first=true) %}{% macro mark() %}{% set ns.first = false %}{% endmacro %}{{ mark() }}{{ ns.first }}") == "False")
        #expect(try render("{% set ns = namespace(n=0) %}{% macro bump(x) %}{% set x.n = x.n + 1 %}{% endmacro %}{{ bump(ns) }}{{ bump(ns) }}{{ ns.n }}") == "2")
        #expect(try render("{% set a = namespace(v=1) %}{% set b = a %}{% set b.v = 2 %}{{ a.v }} {{ a == b }} {{ a == namespace(v=2) }}") == "2 True False")
        #expect(try render("{% set ns = namespace(xs=[]) %}{% for i in range(3) %}{% set holder = [ns] %}{% set ns.xs = ns.xs + [i] %}{% endfor %}{{ ns.xs }}") == "[0, 1, 2]")
    }

    @Test func filtersTestsAndMethods() throws {
        #expect(try render("{{ '  x  ' | trim }}|{{ ' x '.strip() }}|{{ 'a,b'.split(',') }}|{{ 'Hi'.upper() }}") == "x|x|['a', 'b']|HI")
        #expect(try render("{{ xs | selectattr('role', 'equalto', 'user') | map(attribute='c') | join(', ') }}",
                           ["xs": [["role": "user", "c": "a"], ["role": "bot", "c": "b"], ["role": "user", "c": "c"]]]) == "a, c")
        #expect(try render("{{ {'a': [1, 'é'], 'b': none} | tojson }}") == "{\"a\": [1, \"é\"], \"b\": null}")
        #expect(try render("{{ {'a': 1} | tojson(indent=2) }}") == "{\n  \"a\": 1\n}")
        #expect(try render("{{ x is string }} {{ x is not none }} {{ y is defined }} {{ 4 is divisibleby 2 }}", ["x": "s"]) == "True True False True")
        #expect(try render("{{ x | default('d') }} {{ '' | default('e', true) }} {{ [3,1,2] | sort | list }} {{ xs | length }}", ["xs": [1, 2]]) == "d e [1, 2, 3] 2")
        #expect(try render("{{ 'a\\tb\\n' | tojson }}") == "\"a\\tb\\n\"")
    }

    @Test func macros() throws {
        #expect(try render("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Ann') }} {{ greet('Bo', punct='?') }}") == "Hi Ann! Hi Bo?")
    }

    @Test func errorsAreClearNotCrashes() throws {
        #expect(throws: JinjaError.self) { try render("{% if x %}never closed") }
        #expect(throws: JinjaError.self) { try render("{{ 'unterminated }}") }
        #expect(throws: JinjaError.self) { try render("{% frobnicate %}") }
        #expect(throws: JinjaError.self) { try render("{{ 1 + 'a' }}") }
        #expect(throws: JinjaError.self) { try render("{{ x.y }}") }
        #expect(throws: JinjaError("stop here")) { try render("{{ raise_exception('stop here') }}") }
        #expect(throws: JinjaError.self) { try render("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}") }
    }

    @Test func jsonRoundTripKeepsKeyOrder() throws {
        let value = try JinjaValue(json: #"{"z": 1, "a": [true, null, 2.5, "\u00e9\ud83e\udd99"], "m": {}}"#)
        #expect(try Template("{{ v | tojson }}").render(["v": value]) == #"{"z": 1, "a": [true, null, 2.5, "é🦙"], "m": {}}"#)
        #expect(throws: JinjaError.self) { try JinjaValue(json: #"{"a": }"#) }
        #expect(throws: JinjaError.self) { try JinjaValue(json: "[1, 2") }
    }
}
